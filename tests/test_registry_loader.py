"""registry/loader.py: every problem of a file in one run, each naming the offending value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.errors import InputError
from sentinel.registry.loader import load_registry

SEVERAL_ERRORS = """
scope:
  allow: ["10.20.0.0/16"]
systems:
  - id: city-portal
    name: Portal
    owner: {department: IT}
    tier: town
    mlps_level: 9
    endpoints:
      - host: 10.20.1.5
  - id: city-portal
    name: Portal again
    owner: {department: IT}
    tier: city
    mlps_level: 3
    endpoints:
      - host: 10.20.1.6
  - id: district-mail
    name: Mail
    owner: {department: IT}
    tier: district
    mlps_level: 2
    endpoints:
      - host: 192.0.2.10
  - not-a-mapping
"""


def _messages(path: Path) -> list[str]:
    with pytest.raises(InputError) as caught:
        load_registry(path)
    return [str(p) for p in caught.value.problems]


def test_duplicate_id_is_reported_with_the_other_errors(write_file: Callable[[str, str], Path]) -> None:
    path = write_file("registry.yaml", SEVERAL_ERRORS)
    messages = _messages(path)
    # the first system is invalid, yet its id still counts: the duplicate shows in the same run
    assert f"{path}:11: duplicate system id 'city-portal' (first defined at {path}:4)" in messages
    # a valid system's scope check runs beside the invalid ones
    assert any("endpoint host '192.0.2.10' is outside the declared scope" in m for m in messages)
    assert any(m.startswith(f"{path}:25:") and "systems.3" in m for m in messages)
    assert len(messages) == 5, messages


def test_messages_name_the_offending_value(write_file: Callable[[str, str], Path]) -> None:
    path = write_file("registry.yaml", SEVERAL_ERRORS)
    messages = _messages(path)
    assert f"{path}:7: systems.0.tier: 'town' is not one of city, district, street" in messages
    assert f"{path}:8: systems.0.mlps_level: 9 must be at most 5" in messages
    assert any("(got 'not-a-mapping')" in m for m in messages)


def test_a_valid_file_still_loads(write_file: Callable[[str, str], Path]) -> None:
    text = SEVERAL_ERRORS.split("  - id: city-portal\n    name: Portal again", maxsplit=1)[0]
    text = text.replace("tier: town", "tier: city").replace("mlps_level: 9", "mlps_level: 3")
    registry = load_registry(write_file("registry.yaml", text))
    assert [s.id for s in registry.systems] == ["city-portal"]
