"""A request the HTTP parser refuses (100 kB URL or header) is one log line with the client's address, no traceback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web

from sentinel.config.settings import Settings
from sentinel.web.listener import build_listener

BIG = 100_000
#: what the log line names (aiohttp's C parser says which callback refused it; the pure-Python one quotes the line)
PARTS = {
    "URL": ("URL", "request line"),
    "header value": ("header value", "header"),
    "header name": ("header name", "header"),
}
BAD_REQUESTS = {
    "URL": b"GET /" + b"a" * BIG + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header value": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * BIG + b"\r\n\r\n",
    "header name": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"N" * BIG + b": 1\r\n\r\n",
}


async def _send(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        try:
            await writer.drain()
            return await asyncio.wait_for(reader.read(4096), 5)
        except ConnectionResetError:  # the server may answer and close before it has read all we sent
            return b""
    finally:
        writer.close()


async def test_oversized_url_and_headers_log_one_line_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = build_listener(Settings(store=tmp_path / "s.db"), lambda: None, compliance_interval=0)
    runner = web.AppRunner(app, access_log=None)  # as `sentinel run` (runtime/monitor.py) and `serve` start it
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    caplog.set_level(logging.WARNING)  # the default level of `sentinel run`
    answers = {}
    try:
        for name, request in BAD_REQUESTS.items():
            answers[name] = await _send(port, request)
        async with asyncio.timeout(5):  # the listener still serves afterwards
            assert (await _send(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    for name, answer in answers.items():
        assert answer == b"" or answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400", b"HTTP/1.1 431")), name
    assert any(answers.values())
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in records), [r.getMessage() for r in records]
    lines = [r.getMessage() for r in records]
    assert len(lines) == len(BAD_REQUESTS), lines
    for line, name in zip(lines, BAD_REQUESTS, strict=True):
        assert "127.0.0.1" in line and "answered 400" in line, line
        assert any(f"{part} longer than 8190 bytes" in line for part in PARTS[name]), line
        assert len(line) < 300 and "\n" not in line
    assert "Traceback" not in caplog.text


async def test_a_handler_bug_still_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Only the client's mistakes are shortened: our own errors keep aiohttp's full report."""
    from sentinel.web.listener import ParseErrorLog

    caplog.set_level(logging.ERROR)
    try:
        raise RuntimeError("ours")
    except RuntimeError as exc:
        ParseErrorLog().exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
