"""collectors/html_analysis.py, sans-IO: hidden-link techniques, keywords, external hosts, normalisation, decoding,
diffs."""

from __future__ import annotations

from sentinel.collectors.html_analysis import (
    KeywordSet,
    PageAnalysis,
    analyse_page,
    decode_html,
    diff_lines,
    hiding_reason,
    normalise_text,
    normalise_url,
    parse_declarations,
)
from sentinel.collectors.web_integrity import default_keyword_file, load_keywords
from tests.support.html_pages import HIDDEN_PAGE

LINK_WORDS = load_keywords(default_keyword_file("hidden_link_keywords.txt"))
SENSITIVE = load_keywords(default_keyword_file("sensitive_keywords.txt"))
BASE = "https://www.city.example.gov.cn/"
OWN = ["www.city.example.gov.cn"]


def analyse(html: str) -> PageAnalysis:
    return analyse_page(html, BASE, OWN, LINK_WORDS, SENSITIVE)


def test_every_hiding_technique_is_found_with_its_reason() -> None:
    page = analyse_page(HIDDEN_PAGE, BASE, OWN, LINK_WORDS, SENSITIVE)
    why = {link.host: link.hidden for link in page.hidden_links_with_keywords}
    assert why == {
        "xpj888.example.com": "display:none on enclosing <div>",
        "bet365.example.net": "off-screen (left:-9999px) on enclosing <div>",
        "adult.example.org": "zero size (height:0) on enclosing <div>",
        "casino.example.org": "font-size:0 on enclosing <p>",
        "bocai.example.com": "tiny <marquee> (height=1) on enclosing <marquee>",
        "amdc.example.com": "visibility:hidden on enclosing <span>",
        "liuhecai.example.com": "hidden by script on enclosing <div>",
        "duchang.example.com": "display:none on enclosing <div>",
    }
    visible = {link.host for link in page.links if link.hidden is None}
    assert visible == {"www.gov.cn", "www.city.example.gov.cn"}  # font-size switched back on; own link
    own_menu = [link for link in page.links if link.href.endswith("/news/")]
    assert own_menu[0].hidden and own_menu[0] not in page.hidden_links  # hidden own menus are normal
    assert {link.host for link in page.hidden_links} == set(why)
    plain = analyse_page(
        '<div style="display:none"><a href="https://partner.example/">合作单位</a></div>',
        BASE,
        OWN,
        LINK_WORDS,
        SENSITIVE,
    )
    assert [link.host for link in plain.hidden_links] == ["partner.example"]  # hidden and off-site: listed
    assert plain.hidden_links_with_keywords == []  # but no keyword: no critical finding


def test_clean_page_reports_nothing() -> None:
    clean = """<html><head><title>市政府</title><style>.nav{display:block}</style></head><body>
    <div class="nav"><a href="/a">政务公开</a> <a href="https://www.gov.cn/">中国政府网</a></div>
    <p>严厉打击网络赌博违法犯罪活动的通告</p></body></html>"""
    page = analyse_page(clean, BASE, OWN, LINK_WORDS, SENSITIVE)
    assert page.hidden_links == [] and page.hidden_links_with_keywords == []
    assert page.sensitive_found == () and page.script_hosts == () and page.iframe_hosts == ()


def test_keywords_match_words_and_cjk_but_not_inside_words() -> None:
    words = KeywordSet(["bet", "casino", "博彩", "hacked by"])
    assert words.find("https://bet365.example/") == ["bet"]
    assert words.find("better alphabet") == []
    assert words.find("onlinecasino.example") == ["casino"]
    assert words.find("网上博彩平台") == ["博彩"]
    assert words.find("HACKED BY someone") == ["hacked by"]


def test_sensitive_keywords_in_title_meta_and_text() -> None:
    html = """<html><head><title>Hacked by Team X</title><meta name="keywords" content="代开发票,刻章办证"></head>
    <body><p>normal</p></body></html>"""
    page = analyse_page(html, BASE, OWN, LINK_WORDS, SENSITIVE)
    assert page.sensitive_found == ("hacked by", "代开发票", "刻章办证")


def test_external_script_and_iframe_hosts_sorted_and_own_excluded() -> None:
    html = """<script src="https://b.cdn.example/x.js?v=1"></script><script src="/local.js"></script>
    <script src="//a.cdn.example/y.js"></script><script src="https://static.city.example.gov.cn/z.js"></script>
    <iframe src="http://evil.example.net/p"></iframe><iframe src="/own.html"></iframe>"""
    page = analyse_page(html, BASE, OWN, LINK_WORDS, SENSITIVE)
    assert page.script_hosts == ("a.cdn.example", "b.cdn.example")
    assert page.iframe_hosts == ("evil.example.net",)


def test_normalisation_ignores_dates_tokens_counters_and_cache_busters() -> None:
    def page(when: str, token: str, visits: int, bust: str) -> str:
        return f"""<html><head><meta name="csrf-token" content="{token}"><title>门户</title></head><body>
        <p>今天是 {when} 星期一</p><p>访问量：{visits}</p>
        <form action="/login;jsessionid={token}"><input type="hidden" name="_csrf" value="{token}"></form>
        <script nonce="{token}">var t = {bust}; var csrf = "{token}";</script>
        <script src="/app.js?_={bust}"></script><a href="/list?page=2&t={bust}">下一页</a>
        <p>政务公开</p></body></html>"""

    one = analyse(page("2026年11月23日 08:00:01", "a8F3kQ9zLm2PxW7vB4nR6tY1", 1000, "1700000000"))
    two = analyse(page("2026年11月24日 17:45:59", "Zq7Wm3Xp9Lk2Vb8Nc4Hd6Jf0", 1234, "1700003600"))
    assert one.normalized_sha256 == two.normalized_sha256
    changed = analyse(
        page("2026年11月23日 08:00:01", "a8F3kQ9zLm2PxW7vB4nR6tY1", 1000, "1700000000").replace("政务公开", "hacked")
    )
    assert changed.normalized_sha256 != one.normalized_sha256
    diff = diff_lines(one.normalized_text, changed.normalized_text)
    assert "-政务公开" in diff and "+hacked" in diff


def test_normalise_text_and_urls() -> None:
    assert (
        normalise_text("更新于 2026-11-23 12:07:00，  您是第 12,345 位访客")
        == "更新于 <date> <time>， 您是第 <n> 位访客"
    )
    assert (
        normalise_text("Updated Mon, 23 Nov 2026 12:07 GMT, views: 42")
        == "Updated <weekday>, <date> <time> GMT, views: <n>"
    )
    assert normalise_url("https://X.example/a;jsessionid=ABC?id=7&_=123&sid=9") == "https://x.example/a?id=7"
    assert normalise_url("https://x.example/app.js?v=1.2.3", asset=True) == "https://x.example/app.js"


def test_diff_lines_is_bounded() -> None:
    old = "\n".join(f"line {i}" for i in range(500))
    new = "\n".join(f"LINE {i}" for i in range(500))
    diff = diff_lines(old, new, max_lines=50)
    assert len(diff) == 51 and diff[-1].endswith("more diff lines")
    assert diff_lines("same", "same") == []


def test_decode_html_honours_charsets() -> None:
    text = "<html><head><meta charset='gb2312'></head><body>政务公开</body></html>"
    assert "政务公开" in decode_html(text.encode("gbk"))
    assert "政务公开" in decode_html("政务公开".encode("gbk"), "text/html; charset=GBK")
    assert decode_html("政务".encode()) == "政务"
    assert "政务" in decode_html("政务".encode("gb18030"))  # unlabelled, not UTF-8: Chinese legacy fallback
    assert decode_html(b"\xef\xbb\xbfok", "text/html; charset=bogus") == "ok"


def test_hostile_markup_is_bounded_and_never_raises() -> None:
    deep = "<div>" * 20_000 + "<a href='http://x.example/'>x</a>" + "</div>" * 10
    page = analyse_page(deep, BASE, OWN, LINK_WORDS, SENSITIVE)
    assert [link.host for link in page.links] == ["x.example"]
    broken = "<a href='http://[bad/'>x</a><<<>>><style>{{{</style><script>document.write('</script>"
    analyse_page(broken, BASE, OWN, LINK_WORDS, SENSITIVE)
    # Unterminated tags at the end of input made html.parser quadratic (minutes for a few hundred KB).
    for tail in ("<a " * 100_000, "<" * 300_000, "<a href='" * 50_000):
        assert analyse_page("<p>x</p>" + tail, BASE, OWN, LINK_WORDS, SENSITIVE).links == ()
    many = "<p>" * 60_000
    assert analyse_page(many, BASE, OWN, LINK_WORDS, SENSITIVE).truncated


def test_css_declarations_and_reasons() -> None:
    assert parse_declarations("Display: NONE !important; color:red") == {"display": "none", "color": "red"}
    assert hiding_reason({"text-indent": "-9999px"}) == "off-screen (text-indent:-9999px)"
    assert hiding_reason({"width": "1px", "height": "1px", "overflow": "hidden"}) == "zero size (height:1px)"
    assert hiding_reason({"height": "0"}) is None  # without clipping the content overflows visibly
    assert hiding_reason({"opacity": "0"}) == "opacity:0"
    assert hiding_reason({"clip": "rect(0 0 0 0)", "position": "absolute"}) == "clipped"
    assert hiding_reason({"position": "absolute", "left": "10px"}) is None
