"""A third-party rule tree for the rule tools' tests: one port rule with its fixture, and the shipped frameworks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sentinel.paths import shipped_rules_dir

Write = Callable[[str, str], Path]

RULE = """
id: {id}
title: Something open
severity: medium
category: exposure
observation: port
condition: {{field: state, op: eq, value: open}}
controls:
  mlps: ["{control}"]
remediation: Close it.
"""

FIXTURE = """
rule: {id}
cases:
  - name: open fires
    expect: present
    observation: {{kind: port, target: "h:1/tcp", data: {{state: open}}}}
  - name: closed does not
    expect: {second}
    observation: {{kind: port, target: "h:1/tcp", data: {{state: closed}}}}
"""


def tree(write: Write, control: str = "8.1.4.4 b)", second: str = "absent") -> Path:
    """rules/ports/port_thing.yaml (citing `control`) and its fixture (second case expecting `second`)."""
    write("rules/ports/port_thing.yaml", RULE.format(id="port_thing", control=control))
    write("rules/tests/port_thing.yaml", FIXTURE.format(id="port_thing", second=second))
    frameworks = shipped_rules_dir() / "frameworks"
    shutil.copytree(frameworks, write("rules/frameworks/.keep", "").parent, dirs_exist_ok=True)
    return write("rules/.keep", "").parent
