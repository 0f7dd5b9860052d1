"""Fixtures shared by several test modules. Their builders live in tests/support/ and are imported when a fixture
is first used, so a module that fails to import breaks only the tests that need it, not the whole session."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from aiohttp import web

    from sentinel.demo.estate import DemoEstate
    from sentinel.store import SqliteStore
    from tests.support.metrics_stack import Stack


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write dedented text to tmp_path/NAME and return the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    """aiohttp runners a test started (tests.support.loopback_http.serve_on); cleaned up after it."""
    started: list[web.AppRunner] = []
    yield started
    for r in started:
        await r.cleanup()


@pytest.fixture
def hooks() -> Iterator[str]:
    """A webhook receiver (tests.support.notify_lab.Hooks) on loopback: its base URL."""
    from tests.support.notify_lab import serving_hooks

    with serving_hooks() as url:
        yield url


@pytest.fixture
def findings_site(tmp_path: Path) -> Iterator[tuple[str, SqliteStore]]:
    """The web view over three findings (tests.support.web_site.findings_site): its base URL and store."""
    from tests.support.web_site import findings_site

    with findings_site(tmp_path) as site:
        yield site


@pytest.fixture(scope="session")
def metrics_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One swept demo store, `sentinel serve` on it and a real Prometheus scraping it, for the whole session."""
    from tests.support.metrics_stack import running_metrics_stack

    with running_metrics_stack(tmp_path_factory.mktemp("metrics-stack")) as stack:
        yield stack


@pytest.fixture
def scan_estate(tmp_path: Path) -> Iterator[tuple[DemoEstate, Path, asyncio.AbstractEventLoop]]:
    """The demo estate on SCAN_ESTATE_NET.0/24, and a settings file that points `sentinel scan` at it."""
    import yaml

    from tests.support.estate import SCAN_ESTATE_NET, background_estate, demo_collectors, write_registry

    with background_estate(tmp_path, SCAN_ESTATE_NET) as (est, loop):
        settings = {
            "registry": str(write_registry(est, tmp_path)),
            "store": str(tmp_path / "s.db"),
            "collectors": demo_collectors(est),
        }
        config = tmp_path / "sentinel.yaml"
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        yield est, config, loop
