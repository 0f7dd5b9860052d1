"""dashboards/prometheus/alerts.yml: valid for promtool, unit-tested, and every alert says how bad and what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.netns import require_tool

PROMETHEUS = Path(__file__).resolve().parents[1] / "dashboards" / "prometheus"
SEVERITIES = {"critical", "warning", "info"}


def _alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")], check=False, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    done = subprocess.run(
        [promtool, "test", "rules", *map(str, tests)],
        check=False,
        capture_output=True,
        timeout=60,
        cwd=PROMETHEUS / "tests",
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_every_alert_has_a_severity_a_runbook_and_a_unit_test() -> None:
    alerts = _alerts()
    names = {str(rule["alert"]) for rule in alerts}
    assert {
        "SentinelProbeFailing",
        "SentinelCertificateExpiringSoon",
        "SentinelSweepStale",
        "SentinelOutboxGrowing",
        "SentinelDeadLetters",
        "SentinelCriticalFindingsOpen",
    } <= names
    for rule in alerts:
        labels, annotations = rule.get("labels") or {}, rule.get("annotations") or {}
        assert isinstance(labels, dict) and labels.get("severity") in SEVERITIES, rule["alert"]
        assert isinstance(annotations, dict) and annotations.get("runbook") and annotations.get("summary"), rule[
            "alert"
        ]
    tested: set[str] = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc["tests"]:
            tested.update(a["alertname"] for a in case.get("alert_rule_test", []) if a.get("exp_alerts"))
    assert names <= tested, f"alerts without a firing unit test: {sorted(names - tested)}"
