"""The probe catalogue is imported by every command (the settings validate `collectors.<probe>` against each probe's
`Options`), so it must not load what a probe needs only when it runs: aiohttp, cryptography, dnspython, h11 cost a
third of a second of CPU that `sentinel pcap analyze` needs for the analysis. Checked in a fresh interpreter, since
this one has long imported them."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

#: top-level packages a probe imports when it runs, never at import
RUN_TIME_ONLY = ("aiohttp", "cryptography", "dns", "h11")

SCRIPT = """
import json, sys
import sentinel.collectors.catalogue
from sentinel.collectors.catalogue import BUILTIN_PROBES, build_probes
from sentinel.config.settings import CollectorSettings, ProbeOptions

after_import = sorted({m.split(".")[0] for m in sys.modules})
sections = {"dns": {"resolvers": ["10.0.0.1"]}, "tcp_ports": {"high_risk_ports": [21]}, "tls": {"ca_file": None}}
settings = CollectorSettings.model_validate(sections)
built = [p.name for p in build_probes(settings)]
after_settings = sorted({m.split(".")[0] for m in sys.modules})
probes = {
    name: {
        "class": cls.__name__,
        "options": isinstance(cls.Options, type) and issubclass(cls.Options, ProbeOptions),
        "schedule": cls.schedule,
        "fields": bool(cls.fields),
    }
    for name, cls in BUILTIN_PROBES.items()
}
print(json.dumps({"after_import": after_import, "after_settings": after_settings, "built": built, "probes": probes}))
"""


def _run() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_importing_the_catalogue_loads_no_probe_run_time_dependency() -> None:
    result = _run()
    assert [m for m in RUN_TIME_ONLY if m in result["after_import"]] == []
    # validating probe sections and building the probes (no job run yet) does not load them either
    assert [m for m in RUN_TIME_ONLY if m in result["after_settings"]] == []
    assert result["built"]


def test_the_catalogue_is_still_complete() -> None:
    probes = _run()["probes"]
    assert set(probes) == {
        "tcp_ports",
        "icmp",
        "http",
        "tls",
        "tls_scan",
        "banners",
        "exposure",
        "dns",
        "http_security",
        "web_integrity",
        "port_discovery",
        "gm_tls",
    }
    for name, probe in probes.items():
        assert probe["options"], f"{name}: Options is not a ProbeOptions subclass"
        assert probe["schedule"] in ("sweep", "run", "opt_in"), name
        assert probe["fields"], f"{name}: declares no fields"
