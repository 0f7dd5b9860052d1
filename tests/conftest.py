"""Shared fixtures: loopback servers with generated certificates, registries written to tmp files."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sentinel.demo.estate import DemoEstate


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write dedented text to tmp_path/NAME and return the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@contextlib.contextmanager
def background_estate(folder: Path, net: str) -> Iterator[tuple[DemoEstate, asyncio.AbstractEventLoop]]:
    """The demo estate's real servers on `net`.0/24, served from a background event loop so that code under
    test (CLI calls, subprocesses) can run its own loop and reach them."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    estate = DemoEstate(folder, net=net)
    asyncio.run_coroutine_threadsafe(estate.start(), loop).result(30)
    try:
        yield estate, loop
    finally:
        asyncio.run_coroutine_threadsafe(estate.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
