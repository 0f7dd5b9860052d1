"""The demo estate (sentinel/demo) as the tests run it: its real servers on a loopback /24 of the caller's, and
the collector settings that point Sentinel at them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel.cli.main import main
from sentinel.config.settings import CollectorSettings, Settings
from sentinel.demo.estate import DemoEstate

#: the /24 of the `scan_estate` fixture (tests/conftest.py)
SCAN_ESTATE_NET = "127.78.0"


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


def demo_ca(estate: DemoEstate) -> Path:
    assert estate.ca is not None
    return estate.ca.files.cert


def demo_collectors(
    estate: DemoEstate,
    *,
    connect_timeout: float = 1.0,
    per_target_rate: float = 50,
    per_target_burst: float | None = 20,
    **extra: Any,
) -> dict[str, Any]:
    """`collectors:` for a sweep of the demo estate: trust its CA, a short timeout, a rate its servers take.

    A plain mapping (paths as text), for a settings file; `demo_settings` validates it for in-process sweeps."""
    ca = str(demo_ca(estate))
    collectors: dict[str, Any] = {
        "tls": {"ca_file": ca},
        "tls_scan": {"ca_file": ca},
        "connect_timeout": connect_timeout,
        "per_target_rate": per_target_rate,
        **extra,
    }
    if per_target_burst is not None:
        collectors["per_target_burst"] = per_target_burst
    return collectors


def demo_settings(estate: DemoEstate, registry: Path, store: Path, **collectors: Any) -> Settings:
    """Settings for sweeping the demo estate in this process, as `sentinel demo` does (with the tests' rates)."""
    return Settings(
        registry=registry,
        store=store,
        collectors=CollectorSettings.model_validate(demo_collectors(estate, **collectors)),
    )


def write_registry(estate: DemoEstate, folder: Path) -> Path:
    """The estate's registry as a file, as an operator would have it."""
    registry = folder / "registry.yaml"
    registry.write_text(estate.registry_yaml(), encoding="utf-8")
    return registry


def scan_json(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[dict[str, Any]]]:
    """`sentinel scan --format json` in this process: its exit code and the findings it printed."""
    code = main(["scan", "--config", str(config), "--format", "json", *extra])
    return code, json.loads(capsys.readouterr().out)
