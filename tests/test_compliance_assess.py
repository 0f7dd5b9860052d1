"""Compliance verdicts per system × requirement, ratios, framework loading and the CLI."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.compliance_cmd import compliance
from sentinel.cli.progress import ProgressReporter
from sentinel.compliance import (
    ComplianceVerdict,
    ControlVerdict,
    assess,
    iter_assess,
    load_frameworks,
    natural_key,
    ratios,
    select_frameworks,
)
from sentinel.errors import InputError
from sentinel.findings.lifecycle import LifecycleEvent
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.loader import load_registry
from sentinel.store import SqliteStore
from tests.support.engine_lab import shipped_ruleset

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
REGISTRY = """
scope: {allow: ["10.20.0.0/16"]}
systems:
  - id: portal
    name: 市门户
    owner: {department: 大数据局}
    tier: city
    mlps_level: 3
    cii: true
    tags: [e-gov]
    endpoints: [{host: 10.20.0.5, ports: [443]}]
  - id: records
    name: 档案
    owner: {department: 街道办}
    tier: street
    mlps_level: 2
    endpoints: [{host: 10.20.0.6, ports: [443]}]
  - id: silent
    name: 未观测
    owner: {department: 街道办}
    tier: street
    mlps_level: 3
    endpoints: [{host: 10.20.0.7}]
"""


def port(system: str, number: int, state: str, at: datetime = NOW) -> Observation:
    host = {"portal": "10.20.0.5", "records": "10.20.0.6"}[system]
    return Observation(
        "port",
        system,
        f"{host}:{number}/tcp",
        at,
        "tcp_ports",
        ObservationStatus.OK,
        {"state": state, "high_risk": number == 3389, "declared": number == 443, "declared_by": "host"},
    )


@pytest.fixture
def estate(write_file: Callable[[str, str], Path], tmp_path: Path) -> tuple[SqliteStore, Path]:
    registry_file = write_file("registry.yaml", REGISTRY)
    registry = load_registry(registry_file)
    store = SqliteStore(tmp_path / "s.db")
    observations = [port("portal", 3389, "open"), port("portal", 443, "open"), port("records", 443, "open")]
    store.save_observations(observations)
    rules = shipped_ruleset()
    FindingTracker(store).apply(rules.evaluate_stateless(observations, registry), NOW)
    return store, registry_file


def by_key(verdicts: list[ControlVerdict]) -> dict[tuple[str, str, str], ControlVerdict]:
    return {(v.system_id, v.framework, v.control): v for v in verdicts}


def test_verdicts_follow_the_policy(estate: tuple[SqliteStore, Path]) -> None:
    store, registry_file = estate
    registry = load_registry(registry_file)
    verdicts = assess(store, registry, load_frameworks(), NOW)
    got = by_key(verdicts)
    high_risk = got[("portal", "mlps2-l3", "8.1.4.4 b)")]
    assert high_risk.verdict == ComplianceVerdict.NON_COMPLIANT
    assert "port_high_risk_closed on 10.20.0.5:3389/tcp" in high_risk.evidence[0]
    assert high_risk.observed_at == NOW
    # the same finding is only partial evidence for an indicative requirement
    assert got[("portal", "mlps2-l3", "8.1.2.1 d)")].verdict == ComplianceVerdict.PARTIALLY_COMPLIANT
    # level 2 system: level-3 framework does not apply; its level-2 item has no finding
    assert got[("records", "mlps2-l3", "8.1.4.4 b)")].verdict == ComplianceVerdict.NOT_APPLICABLE
    assert got[("records", "mlps2-l2", "7.1.4.4 b)")].verdict == ComplianceVerdict.NO_REMOTE_FINDING
    # never observed: not assessed, never a pass
    assert got[("silent", "mlps2-l3", "8.1.4.4 b)")].verdict == ComplianceVerdict.NOT_ASSESSED
    # no rule can evidence MFA
    assert got[("portal", "mlps2-l3", "8.1.4.1 d)")].verdict == ComplianceVerdict.NOT_ASSESSED
    # mail-only requirement
    assert got[("portal", "mlps2-l3", "8.1.3.4 b)")].verdict == ComplianceVerdict.NOT_APPLICABLE
    assert not any(v.verdict.value == "compliant" for v in verdicts)


def test_stale_observations_stop_counting(estate: tuple[SqliteStore, Path]) -> None:
    store, registry_file = estate
    registry = load_registry(registry_file)
    later = assess(store, registry, load_frameworks(), NOW + timedelta(days=30))
    assert by_key(later)[("records", "mlps2-l2", "7.1.4.4 b)")].verdict == ComplianceVerdict.NOT_ASSESSED


def test_accepted_risk_still_counts_and_says_so(estate: tuple[SqliteStore, Path]) -> None:
    store, registry_file = estate
    tracker = FindingTracker(store)
    (finding,) = store.list_findings(rule_ids=["port_high_risk_closed"])
    tracker.act(finding, LifecycleEvent.SUPPRESS, "auditor", "vendor access, EXC-1", NOW)
    v = by_key(assess(store, load_registry(registry_file), load_frameworks(), NOW))[
        ("portal", "mlps2-l3", "8.1.4.4 b)")
    ]
    assert v.verdict == ComplianceVerdict.NON_COMPLIANT
    assert "accepted risk: vendor access, EXC-1" in v.evidence[0]


def test_ratios_keep_not_assessed_in_the_denominator(estate: tuple[SqliteStore, Path]) -> None:
    store, registry_file = estate
    registry = load_registry(registry_file)
    verdicts = assess(store, registry, [f for f in load_frameworks() if f.framework == "mlps2-l3"], NOW)
    (silent,) = [r for r in ratios(verdicts, registry, "system") if r.group == "silent"]
    assert silent.ratio == 0 and silent.counts.get("not_assessed", 0) == silent.applicable - 0
    by_tier = {r.group: r for r in ratios(verdicts, registry, "tier")}
    assert set(by_tier) == {"city", "street"}
    by_department = {r.group for r in ratios(verdicts, registry, "department")}
    assert by_department == {"大数据局", "街道办"}


def test_cli_json_records(estate: tuple[SqliteStore, Path]) -> None:
    store, registry_file = estate
    store_path = store.path
    result = CliRunner().invoke(
        compliance,
        ["status", "--registry", str(registry_file), "--store", store_path, "--system", "portal", "--format", "json"],
        standalone_mode=False,
    )
    assert result.exception is None, result.output
    data = json.loads(result.output)
    record = next(r for r in data["verdicts"] if r["control"] == "8.1.4.4 b)" and r["framework"] == "mlps2-l3")
    assert {"system_id", "framework", "control", "verdict", "evidence", "observed_at"} <= set(record)
    assert record["verdict"] == "non_compliant" and record["system_id"] == "portal"
    assert {r["group"] for r in data["ratios"]} == {"portal"}
    table = CliRunner().invoke(
        compliance, ["status", "--registry", str(registry_file), "--store", store_path], standalone_mode=False
    )
    assert "non_compliant 不符合" in table.output and "Compliance ratio by system" in table.output


def test_framework_files_are_validated(write_file: Callable[[str, str], Path]) -> None:
    bad = write_file(
        "fw/bad.yaml",
        """
        framework: x1
        title: X
        namespace: iso
        requirements:
          - {id: a, title: A, coverage: Z}
          - {id: a, title: A, coverage: F}
        """,
    )
    with pytest.raises(InputError) as err:
        load_frameworks([bad.parent])
    text = str(err.value)
    assert "bad.yaml:3: namespace" in text and "bad.yaml:5: requirements.0.coverage" in text


def test_each_system_is_judged_at_its_own_level_and_international_is_opt_in(
    estate: tuple[SqliteStore, Path],
) -> None:
    store, registry_file = estate
    registry = load_registry(registry_file)
    shipped = load_frameworks()
    verdicts = list(iter_assess(store, registry, select_frameworks(shipped), NOW))
    frameworks: dict[str, set[str]] = {}
    for v in verdicts:
        frameworks.setdefault(v.system_id, set()).add(v.framework)
    assert frameworks == {"portal": {"mlps2-l3", "gov-web"}, "records": {"mlps2-l2"}, "silent": {"mlps2-l3"}}
    wider = {v.framework for v in iter_assess(store, registry, select_frameworks(shipped, international=True), NOW)}
    assert {"cis-v8", "nist-800-53r5"} <= wider
    with pytest.raises(InputError, match="unknown framework"):
        select_frameworks(shipped, ["mlps9"])


def test_controls_come_in_natural_order(estate: tuple[SqliteStore, Path]) -> None:
    assert sorted(["13.10", "3.3", "8.1.4.10 a)", "8.1.4.7 b)", "8.1.4.7 a)"], key=natural_key) == [
        "3.3",
        "8.1.4.7 a)",
        "8.1.4.7 b)",
        "8.1.4.10 a)",
        "13.10",
    ]
    store, registry_file = estate
    fws = [f for f in load_frameworks() if f.framework in ("mlps2-l3", "cis-v8")]
    for fw in ("mlps2-l3", "cis-v8"):
        got = [
            v.control
            for v in iter_assess(store, load_registry(registry_file), fws, NOW, system_ids=["portal"])
            if v.framework == fw
        ]
        numbers = [tuple(int(n) for n in re.findall(r"\d+", c)) for c in got]
        assert numbers == sorted(numbers) and len(got) > 5, got


def test_progress_off_a_terminal_writes_a_line_every_ten_seconds() -> None:
    clock = iter(float(t) for t in range(0, 100, 3))  # 3 s per step
    out = io.StringIO()
    with ProgressReporter("status", 30, stream=out, clock=lambda: next(clock), interactive=False) as progress:
        for _ in range(30):
            progress.advance()
    lines = out.getvalue().splitlines()
    assert 7 <= len(lines) <= 9, lines  # ~87 s of work, one line per 10 s
    assert lines[0].startswith("status: ") and "/30 (" in lines[0] and "ETA" in lines[0]


@pytest.fixture(scope="module")
def big_estate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from bench.report_estate import build_estate

    return build_estate(tmp_path_factory.mktemp("estate"), systems=1354, findings=8000)


def test_status_summary_stays_a_screenful_for_an_estate(big_estate: tuple[Path, Path]) -> None:
    registry, db = big_estate
    base = ["status", "--registry", str(registry), "--store", str(db)]
    result = CliRunner().invoke(compliance, base, standalone_mode=False)
    assert result.exception is None, result.output
    lines = result.output.splitlines()
    # framework × department (40 departments, 3 MLPS levels + gov-web) plus borders: not 700,000 lines
    assert 40 < len(lines) < 250, len(lines)
    assert "Compliance ratio by department" in result.output and "市公安局" in result.output
    assert "cis-v8" not in result.output and "nist" not in result.output
    detail = CliRunner().invoke(
        compliance, [*base, "--system", "sys-0001", "--verdict", "non_compliant"], standalone_mode=False
    )
    assert detail.exception is None, detail.output
    assert "sys-0001" in detail.output and "non_compliant 不符合" in detail.output
    assert "no_remote_finding 远程" not in detail.output.split("Compliance ratio")[0]


def test_status_json_streams_one_record_per_line(big_estate: tuple[Path, Path]) -> None:
    registry, db = big_estate
    base = ["status", "--registry", str(registry), "--store", str(db), "--department", "市公安局"]
    result = CliRunner().invoke(compliance, [*base, "--format", "jsonl"], standalone_mode=False)
    assert result.exception is None, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    verdicts = [r for r in records if r["type"] == "verdict"]
    assert len(verdicts) > 500 and {r["type"] for r in records} == {"verdict", "ratio"}
    assert all(r["framework"] in ("mlps2-l2", "mlps2-l3", "mlps2-l4", "gov-web") for r in verdicts)
    doc = CliRunner().invoke(compliance, [*base, "--format", "json"], standalone_mode=False)
    lines = doc.output.splitlines()
    assert lines[0].startswith('{"assessed_at": ') and lines[0].endswith('"verdicts": [')
    body = lines[1 : lines.index("],")]
    assert len(body) == len(verdicts) and all(json.loads(line.rstrip(","))["system_id"] for line in body)
    assert json.loads(doc.output)["ratios"]
