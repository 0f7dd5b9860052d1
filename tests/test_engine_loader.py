"""engine/loader.py: the shipped rules load and index by kind; a rule file's mistakes are located at FILE:LINE."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.errors import InputError
from sentinel.paths import shipped_rules_dir


def test_shipped_rules_load_and_index_by_kind() -> None:
    rules = RuleSet(load_rules([shipped_rules_dir()]))
    assert len(rules) >= 12
    assert {r.id for r in rules.for_kind("tls")} >= {"tls_cert_not_expired", "tls_protocol_modern"}
    assert all(r.remediation and r.controls.flat() for r in rules.rules)


def test_rule_file_errors_are_located(write_file: Callable[[str, str], Path]) -> None:
    write_file(
        "rules/a/wrong_name.yaml",
        """
        id: other_name
        title: Something
        severity: severe
        category: exposure
        observation: port
        condition: {field: state, op: eq, value: open}
        remediation: Close it.
        colour: red
        """,
    )
    path = write_file("rules/b/ok_rule.yaml", "id: ok_rule\n")
    with pytest.raises(InputError) as err:
        load_rules([path.parent.parent])
    text = str(err.value)
    assert "wrong_name.yaml:3: severity" in text and "wrong_name.yaml:8: unknown key 'colour'" in text
    assert "ok_rule.yaml:1: title: Field required" in text
