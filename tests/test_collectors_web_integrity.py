"""The web_integrity probe against real loopback servers: hidden gambling links found and judged, a clean page, a
digest that ignores timestamps and CSRF tokens, an error page, and a broken keyword file named at its line."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from sentinel.collectors.html_analysis import diff_lines
from sentinel.collectors.web_integrity import WebIntegrityProbe, load_keywords
from sentinel.config.settings import CollectorSettings
from sentinel.errors import InputError
from tests.support.html_pages import HIDDEN_PAGE
from tests.support.web_probe_runs import IP, SETTINGS, fires, run_probe, serve


async def test_hidden_gambling_links_found_and_rule_fires(runners: list[web.AppRunner]) -> None:
    async def page(_: web.Request) -> web.Response:
        return web.Response(
            body=HIDDEN_PAGE.encode("gbk", errors="replace").replace(b"utf-8", b"gbk"), content_type="text/html"
        )

    runner, port = await serve(page)
    runners.append(runner)
    obs = await run_probe(WebIntegrityProbe(SETTINGS), f"http://{IP}:{port}/")
    assert obs.status.value == "ok", obs.error
    hidden = {link["href"]: link["why"] for link in obs.data["links.hidden_with_keywords"]}
    assert len(hidden) == 8 and obs.data["links.hidden_with_keywords_count"] == 8
    assert hidden["http://xpj888.example.com/"] == "display:none on enclosing <div>"
    assert "新葡京" in obs.data["links.hidden_keywords"]  # decoded from GBK
    assert fires("web_no_hidden_gambling_adult_links", obs) is True
    assert len(obs.data["content.normalized_sha256"]) == 64 and "新葡京娱乐城" in obs.data["content.normalized_text"]


async def test_clean_page_gives_no_finding(runners: list[web.AppRunner]) -> None:
    async def page(_: web.Request) -> web.Response:
        html = """<html><head><title>市政府门户</title><script src="/js/app.js"></script></head><body>
        <nav style="display:none"><a href="/m">菜单</a></nav><p>关于开展打击网络赌博专项行动的通告</p>
        <a href="https://www.gov.cn/">中国政府网</a></body></html>"""
        return web.Response(text=html, content_type="text/html")

    runner, port = await serve(page)
    runners.append(runner)
    obs = await run_probe(WebIntegrityProbe(SETTINGS), f"http://{IP}:{port}/")
    assert obs.data["links.hidden"] == [] and obs.data["links.hidden_with_keywords_count"] == 0
    assert obs.data["keywords.sensitive_found"] == [] and obs.data["scripts.external_hosts"] == []
    assert fires("web_no_hidden_gambling_adult_links", obs) is False
    assert fires("web_no_sensitive_keywords", obs) is False


async def test_digest_ignores_timestamps_and_csrf_but_not_content(runners: list[web.AppRunner]) -> None:
    state = {"n": 0, "body": "政务公开 信息公开目录"}

    async def page(_: web.Request) -> web.Response:
        state["n"] += 1
        token = f"{state['n']:08d}deadbeefcafe{state['n'] * 7919:012d}"
        html = f"""<html><head><meta name="csrf-token" content="{token}"></head><body>
        <p>{time.strftime("%Y-%m-%d %H:%M:%S")} 访问量：{1000 + state["n"]}</p>
        <form><input type="hidden" name="csrf_token" value="{token}"></form>
        <script src="/static/app.js?t={time.time_ns()}"></script><p>{state["body"]}</p></body></html>"""
        return web.Response(text=html, content_type="text/html")

    runner, port = await serve(page)
    runners.append(runner)
    probe = WebIntegrityProbe(SETTINGS)
    first = await run_probe(probe, f"http://{IP}:{port}/")
    await asyncio.sleep(1.05)  # the clock on the page moves on
    second = await run_probe(probe, f"http://{IP}:{port}/")
    assert first.data["content.normalized_sha256"] == second.data["content.normalized_sha256"]
    state["body"] = "政务公开 本站已被黑客入侵"
    changed = await run_probe(probe, f"http://{IP}:{port}/")
    assert changed.data["content.normalized_sha256"] != first.data["content.normalized_sha256"]
    diff = diff_lines(first.data["content.normalized_text"], changed.data["content.normalized_text"])
    assert "+政务公开 本站已被黑客入侵" in diff and "-政务公开 信息公开目录" in diff
    assert changed.data["keywords.sensitive_found"] == ["黑客入侵"]
    assert fires("web_no_sensitive_keywords", changed) is True


async def test_error_page_is_an_error_observation_not_facts(runners: list[web.AppRunner]) -> None:
    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance")

    runner, port = await serve(broken)
    runners.append(runner)
    obs = await run_probe(WebIntegrityProbe(SETTINGS), f"http://{IP}:{port}/")
    assert obs.status.value == "error" and obs.data["error_kind"] == "protocol" and "503" in (obs.error or "")
    assert "links.hidden_with_keywords_count" not in obs.data
    assert fires("web_no_hidden_gambling_adult_links", obs) is None


async def test_broken_keyword_file_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("赌场\n" + "x" * 200 + "\n", encoding="utf-8")
    settings = CollectorSettings(web_integrity={"hidden_link_keywords": words})
    obs = await run_probe(WebIntegrityProbe(settings), f"http://{IP}:9/")
    assert obs.status.value == "error" and obs.data["error_kind"] == "internal"
    assert f"{words}:2: keyword longer than 100 characters" in (obs.error or "")


def test_keyword_file_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "words.txt"
    bad.write_text("# comment\nok\n" + "x" * 150 + "\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_keywords(bad)
    assert f"{bad}:3:" in str(info.value)
    binary = tmp_path / "gbk.txt"
    binary.write_bytes("好的\n".encode() + "赌博".encode("gbk"))
    with pytest.raises(InputError, match=r"gbk.txt:2: keyword file is not UTF-8"):
        load_keywords(binary)
    with pytest.raises(InputError, match="cannot read keyword file"):
        load_keywords(tmp_path / "missing.txt")
