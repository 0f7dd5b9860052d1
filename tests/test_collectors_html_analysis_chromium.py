"""Cross-check of the static hidden-link detection against a real browser (headless Chromium).

The page under test carries a script that asks the rendering engine which links a reader cannot see
(no layout boxes, hidden, transparent, zero-size clipping ancestor, off-screen, font too small) and
writes the answer into the DOM; `chromium --dump-dom` prints it.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from sentinel.collectors.html_analysis import KeywordSet, analyse_page
from sentinel.demo.estate import free_port
from tests.netns import require_tool
from tests.support.html_pages import HIDDEN_PAGE

IP = "127.81.0.20"

PROBE_SCRIPT = """<script>
window.addEventListener('load', function () {
  function invisible(a) {
    if (a.getClientRects().length === 0) return true;
    for (var e = a; e; e = e.parentElement) {
      var s = getComputedStyle(e);
      if (s.visibility !== 'visible' || parseFloat(s.opacity) === 0) return true;
    }
    if (parseFloat(getComputedStyle(a).fontSize) <= 1) return true;
    for (var p = a.parentElement; p; p = p.parentElement) {
      var b = p.getBoundingClientRect();
      var clips = getComputedStyle(p).overflow !== 'visible' || p.tagName === 'MARQUEE';
      if (clips && (b.width <= 5 || b.height <= 5)) return true;
    }
    var r = a.getBoundingClientRect();
    return r.right <= 0 || r.bottom <= 0;
  }
  var out = [];
  document.querySelectorAll('a[href]').forEach(function (a) { if (invisible(a)) out.push(a.href); });
  var pre = document.createElement('pre');
  pre.id = 'sentinel-hidden';
  pre.textContent = JSON.stringify(out.sort());
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture
async def page_url() -> AsyncIterator[str]:
    html = HIDDEN_PAGE.replace("</body>", PROBE_SCRIPT + "</body>")

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(IP)
    await web.TCPSite(runner, IP, port).start()
    yield f"http://{IP}:{port}/"
    await runner.cleanup()


async def test_static_hidden_links_match_chromium(page_url: str, tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    html = HIDDEN_PAGE.replace("</body>", PROBE_SCRIPT + "</body>")
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path}",
        "--proxy-server=direct://",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE " + IP,  # nothing but the loopback page is fetched
        "--virtual-time-budget=3000",
        "--dump-dom",
        page_url,
    ]
    result = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=60)
    found = re.search(r'<pre id="sentinel-hidden">(.*?)</pre>', result.stdout, re.S)
    assert found, f"chromium printed no result: {result.stderr[-500:]}"
    browser_hidden = set(json.loads(found.group(1).replace("&amp;", "&")))
    analysis = analyse_page(html, page_url, [IP], KeywordSet([]), KeywordSet([]))
    static_hidden = {link.href for link in analysis.links if link.hidden}
    assert static_hidden == browser_hidden
    assert len(static_hidden) == 9  # the eight planted links and the hidden own menu
