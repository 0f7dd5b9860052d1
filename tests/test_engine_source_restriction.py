"""Source-restriction checks (issue 14): a port the registry declares reachable only from some vantages, seen
open from another, is a finding with the observation's evidence (open, from which vantage) and the declaration.

Real sweeps: two instances, one on the Internet line and one inside, probe the same loopback listener.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.cli.main import main
from sentinel.engine.conditions import Condition, compile_condition
from sentinel.errors import InputError
from sentinel.models import Vantage
from sentinel.registry.loader import load_registry_text
from tests.support.vantage_lab import HOST, SYSTEM, closed_port, instance, lab_registry, listening

RULE = "port_reachable_only_from_declared_vantages"


def test_the_management_port_open_to_the_internet_instance_is_a_finding_and_not_to_the_internal_one(
    tmp_path: Path,
) -> None:
    silent = closed_port()
    with listening() as management:
        registry = lab_registry(management, silent)
        outside = instance(tmp_path, registry, "hexi-district", Vantage.INTERNET)
        inside = instance(tmp_path, registry, "hexi-district", Vantage.INTERNAL)
        try:
            seen_outside = outside.scan()
            seen_inside = inside.scan()
        finally:
            outside.close()
            inside.close()
    target = f"{HOST}:{management}/tcp"
    (obs,) = [o for o in seen_outside.observations if o.kind == "port" and o.target == target]
    assert obs.data["state"] == "open" and obs.data["reachable_from"] == ["internal"]
    assert (obs.site, obs.vantage) == ("hexi-district", Vantage.INTERNET)  # stamped by the ingest
    (finding,) = [f for f in seen_outside.changes.new if f.rule_id == RULE]
    assert (finding.system_id, finding.target, finding.vantage) == (SYSTEM, target, Vantage.INTERNET)
    assert finding.evidence["state"] == "open"
    assert finding.evidence["vantage"] == "internet" and finding.evidence["site"] == "hexi-district"
    assert finding.evidence["reachable_from"] == ["internal"]
    assert "mlps:8.1.4.4 c)" in finding.controls and "mlps:8.1.3.2 a)" in finding.controls
    assert not [f for f in seen_inside.changes.new if f.rule_id == RULE]
    # the port nobody declared a restriction for gives this rule no verdict at all
    assert not [f for f in seen_outside.changes.new if f.rule_id == RULE and f.target != target]


def test_the_finding_resolves_once_the_boundary_filters_the_port(tmp_path: Path) -> None:
    silent = closed_port()
    with listening() as management:
        registry = lab_registry(management, silent)
        outside = instance(tmp_path, registry, "city", Vantage.INTERNET)
        try:
            first = outside.scan()
        finally:
            outside.close()
    (finding,) = [f for f in first.changes.new if f.rule_id == RULE]
    outside = instance(tmp_path, registry, "city", Vantage.INTERNET)  # the listener is gone: the port is closed
    try:
        again = outside.scan()
    finally:
        outside.close()
    assert finding.id in {f.id for f in again.changes.resolved}


def test_registry_validation_rejects_unknown_vantages_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
scope: {allow: ["10.0.0.0/24"]}
systems:
  - id: s1
    name: S
    owner: {department: D}
    tier: city
    mlps_level: 3
    endpoints:
      - host: 10.0.0.5
        ports: [22]
        reachable_from: [internal, dmz]
"""
    with pytest.raises(InputError) as caught:
        load_registry_text(text, "registry.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("registry.yaml", 12)
    assert "unknown vantage 'dmz' (one of internet, extranet, internal)" in problem.message
    path = tmp_path / "registry.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["registry", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:12: " in err and "unknown vantage 'dmz'" in err and "Traceback" not in err


def test_a_single_vantage_may_be_written_without_brackets() -> None:
    registry = load_registry_text(
        """
scope: {allow: ["10.0.0.0/24"]}
systems:
  - {id: s1, name: S, owner: {department: D}, tier: city, mlps_level: 3,
     endpoints: [{host: 10.0.0.5, ports: [22], reachable_from: extranet}]}
"""
    )
    assert registry.systems[0].endpoints[0].reachable_from == [Vantage.EXTRANET]


def test_conditions_compare_two_fields_of_one_observation() -> None:
    def run(node: dict[str, object], fields: dict[str, object]) -> bool | None:
        return compile_condition(Condition.model_validate(node))(fields.get)

    outside = {"field": "vantage", "op": "not_in", "value_field": "reachable_from"}
    assert run(outside, {"vantage": "internet", "reachable_from": ["internal"]}) is True
    assert run(outside, {"vantage": "internal", "reachable_from": ["internal", "extranet"]}) is False
    assert run(outside, {"vantage": "internet"}) is None  # no declaration: cannot tell
    assert run(outside, {"vantage": "internet", "reachable_from": "internal"}) is None  # not a list
    assert run({"field": "a", "op": "lt", "value_field": "b"}, {"a": 1, "b": 2.5}) is True
    assert run({"field": "a", "op": "lt", "value_field": "b"}, {"a": 1, "b": "2"}) is None
    assert run({"field": "a", "op": "eq", "value_field": "b"}, {"a": "x", "b": "x"}) is True
    assert run({"field": "a", "op": "contains", "value_field": "b"}, {"a": ["x", "y"], "b": "y"}) is True
    assert Condition.model_validate(outside).fields() == {"vantage", "reachable_from"}
    for bad, why in (
        ({**outside, "value": ["internal"]}, "not both"),
        ({"field": "a", "op": "matches", "value_field": "b"}, "cannot compare with another field"),
        ({"field": "a", "op": "exists", "value_field": "b"}, "cannot compare with another field"),
    ):
        with pytest.raises(ValueError, match=why):
            Condition.model_validate(bad)
