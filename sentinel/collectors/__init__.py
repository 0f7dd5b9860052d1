"""Collectors: probes that plan jobs from the registry and turn network answers into observations.

The probe catalogue (`catalogue.py`: `BUILTIN_PROBES`, `build_probes`) imports every probe module; it is
loaded on first use, so that code needing only a protocol parser (the traffic detectors use
`protocols.dnsmsg`) does not pay for it. The probe modules in turn import their network libraries
(aiohttp, cryptography, dnspython, h11) only when a probe runs: loading the settings imports the
catalogue for the probes' `Options`, and `tests/test_collectors_imports.py` keeps it light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentinel.collectors.base import Probe, ProbeJob
    from sentinel.collectors.catalogue import BUILTIN_PROBES, build_probes

_LAZY = {
    "BUILTIN_PROBES": "sentinel.collectors.catalogue",
    "build_probes": "sentinel.collectors.catalogue",
    "Probe": "sentinel.collectors.base",
    "ProbeJob": "sentinel.collectors.base",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:  # not ours: lets `from sentinel.collectors import <submodule>` import it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["BUILTIN_PROBES", "Probe", "ProbeJob", "build_probes"]
