"""`sentinel serve` scraped by a real Prometheus: every family is there, named and labelled by the conventions."""

from __future__ import annotations

import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.netns import require_tool
from tests.support.metrics_stack import Stack, http_get, wait_until


def test_prometheus_scrapes_probe_results_per_system_and_probe(metrics_stack: Stack) -> None:
    prom = metrics_stack.prometheus
    success = {
        (s["metric"]["system"], s["metric"]["probe"]): s["value"][1] for s in prom.series("sentinel_probe_success")
    }
    assert success[("city-open-data", "http")] == "1"
    assert success[("district-permits", "http")] == "0"  # registered, but nothing listens
    assert {probe for _, probe in success} >= {"tcp_ports", "http", "tls"}
    durations = prom.series('sentinel_probe_duration_seconds{system="city-open-data", probe="http"}')
    assert durations and 0 < float(durations[0]["value"][1]) < 10

    up = {s["metric"]["system"]: s for s in prom.series("sentinel_system_up")}
    assert up["district-permits"]["value"][1] == "0"
    assert up["city-open-data"]["value"][1] == "1"
    assert up["city-open-data"]["metric"]["tier"] == "city"
    assert up["city-open-data"]["metric"]["department"] == "市大数据管理中心"


def test_certificate_expiry_and_findings_are_labelled_by_tier_and_department(metrics_stack: Stack) -> None:
    prom = metrics_stack.prometheus
    now = time.time()
    expiry = {
        s["metric"]["system"]: float(s["value"][1])
        for s in prom.series("sentinel_certificate_expiry_timestamp_seconds")
    }
    assert expiry["city-portal"] < now  # the demo's expired certificate
    assert expiry["city-open-data"] > now + 300 * 86400

    findings = prom.series("sentinel_findings_open")
    assert findings
    for series in findings:
        labels = series["metric"]
        assert set(labels) >= {"system", "tier", "department", "severity", "category", "status"}
        assert labels["status"] in ("open", "acknowledged")
    by_system = {s["metric"]["system"] for s in findings}
    assert {"city-portal", "street-records"} <= by_system
    by_tier = prom.series("sum by (tier) (sentinel_findings_open)")
    assert {s["metric"]["tier"] for s in by_tier} <= {"city", "district", "street"}


def test_sweep_health_is_exported(metrics_stack: Stack) -> None:
    prom = metrics_stack.prometheus
    last = prom.series("sentinel_sweep_last_success_timestamp_seconds")
    assert last and abs(float(last[0]["value"][1]) - time.time()) < 600
    duration = prom.series("sentinel_sweep_duration_seconds")
    assert duration and float(duration[0]["value"][1]) > 0
    assert prom.series("sentinel_sweeps_completed_total")[0]["value"][1] == "1"
    assert prom.series('sentinel_sweep_observations{status="error"}')


def test_compliance_ratio_per_system_and_framework(metrics_stack: Stack) -> None:
    prom = metrics_stack.prometheus
    series = wait_until("compliance assessed", lambda: prom.series("sentinel_compliance_ratio"))
    assert {s["metric"]["system"] for s in series} <= {
        "city-portal",
        "district-portal",
        "street-records",
        "district-permits",
        "city-open-data",
    }
    assert all(0 <= float(s["value"][1]) <= 1 for s in series)
    assert prom.series("sentinel_compliance_assessment_timestamp_seconds")


def test_blackbox_compatible_probe_endpoint(metrics_stack: Stack) -> None:
    prom = metrics_stack.prometheus
    success = {s["metric"]["instance"]: s["value"][1] for s in prom.series('probe_success{job="sentinel_probe"}')}
    assert success == {"city-portal": "1", "city-open-data": "1"}
    codes = prom.series('probe_http_status_code{instance="city-open-data"}')
    assert codes[0]["value"][1] == "200"
    expiry = prom.series('probe_ssl_earliest_cert_expiry{instance="city-portal"}')
    assert float(expiry[0]["value"][1]) < time.time()


def test_probe_refuses_unknown_targets_and_never_probes_on_demand(metrics_stack: Stack) -> None:
    base = metrics_stack.exporter.url
    status, body = http_get(f"{base}/probe?target=http://127.0.0.1:1/&module=http_2xx")
    assert status == 404 and b"never probes on demand" in body
    status, body = http_get(f"{base}/probe?target=city-portal&module=bogus")
    assert status == 400 and b"unknown module 'bogus'" in body
    status, body = http_get(f"{base}/probe")
    assert status == 400 and b"missing 'target'" in body


def test_metrics_pass_promtool_and_labels_stay_bounded(metrics_stack: Stack) -> None:
    promtool = require_tool("promtool")
    status, body = http_get(metrics_stack.exporter.url + "/metrics")
    assert status == 200
    check = subprocess.run([promtool, "check", "metrics"], input=body, check=False, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    families = list(text_string_to_metric_families(body.decode()))
    names = {f.name for f in families}
    assert {"sentinel_probe_success", "sentinel_findings_open", "sentinel_sweeps_completed"} <= names
    for family in families:
        assert family.name.startswith("sentinel_")
        assert not family.samples or not any(s.name.endswith("_created") for s in family.samples)
        for sample in family.samples:
            for value in sample.labels.values():
                # system ids, enum values and registry names: never a URL, an address or error text
                assert "://" not in value and "127.77." not in value and "connect" not in value.lower(), sample
