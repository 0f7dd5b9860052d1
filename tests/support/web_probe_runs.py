"""One government website on a loopback address and a probe run against it, for the http_security and web_integrity
probe tests; `fires` judges an observation with a shipped rule."""

from __future__ import annotations

import functools

from sentinel.collectors.http_security import HttpSecurityProbe
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.web_integrity import WebIntegrityProbe
from sentinel.config.settings import CollectorSettings
from sentinel.models import Observation
from sentinel.registry.models import System
from sentinel.registry.scope import Scope
from tests.support.engine_lab import shipped_rules
from tests.support.loopback_http import serve_on
from tests.support.registry_files import system_doc

IP = "127.81.0.10"
SCOPE = Scope(allow=["127.81.0.0/24"])
SETTINGS = CollectorSettings(connect_timeout=1.0, http_timeout=3.0, per_target_rate=500, per_target_burst=200)
RULES = shipped_rules()

serve = functools.partial(serve_on, IP)  # every server of these tests listens on IP


def system(url: str, tags: list[str] | None = None) -> System:
    doc = system_doc("gov-site", "City portal", [{"url": url}], mlps_level=3, tags=tags or ["gov-website"])
    return System.model_validate(doc)


async def run_probe(probe: HttpSecurityProbe | WebIntegrityProbe, url: str) -> Observation:
    net = ScopedNetwork(SCOPE, SETTINGS)
    try:
        (job,) = list(probe.plan(system(url)))
        (obs,) = await run_job(PlannedJob(probe, job), net, 20)
        return obs
    finally:
        await net.close()


def fires(rule_id: str, obs: Observation) -> bool | None:
    return RULES[rule_id].evaluate(obs)
