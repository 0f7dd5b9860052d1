"""Pages that the HTML analysis, the web-integrity probe and the browser cross-check all read."""

from __future__ import annotations

#: a government home page with gambling and adult links hidden by every technique a defacement kit uses
HIDDEN_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>某市人民政府门户网站</title>
<style>
/* planted by the kit */
.hd1 { display: none }
#box2 { position:absolute; left:-9999px; top:-9999px }
div.tiny { height:0; overflow:hidden }
.menu { display:none }
@media screen { .m2 { visibility: hidden } }
</style></head><body>
<ul class="menu"><li><a href="/news/">新闻中心</a></li></ul>
<div class="hd1"><a href="http://xpj888.example.com/">新葡京娱乐城</a></div>
<div id="box2"><a href="https://bet365.example.net/">bet365</a></div>
<div class="tiny"><a href="http://adult.example.org/">成人视频</a></div>
<p style="font-size:0px"><a href="http://casino.example.org/">online casino</a></p>
<marquee height="1"><a href="http://bocai.example.com/">博彩</a></marquee>
<span class="m2"><a href="http://amdc.example.com/">澳门赌场</a></span>
<div id="jsh"><a href="http://liuhecai.example.com/">六合彩</a></div>
<script>document.getElementById('jsh').style.display='none';</script>
<script>document.write('<div style="display:none"><a href="http://duchang.example.com/">' + '赌场</a></div>');</script>
<p style="font-size:0"><a style="font-size:14px" href="https://www.gov.cn/">中国政府网</a></p>
<a href="/about">关于我们</a>
</body></html>"""
