"""registry/loader.py: the issue's registry shape loads; every problem of a file (or a folder of files) in one run,
at FILE:LINE, each naming the offending value; URL credentials refused unechoed; over-wide scopes need an override."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.cli.main import main
from sentinel.errors import InputError
from sentinel.registry.loader import build_registry, load_registry
from sentinel.yamlio import load_yaml_text
from tests.support.registry_files import BAD, GOOD

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


def test_issue_shape_is_accepted(write_file: Callable[[str, str], Path]) -> None:
    reg = load_registry(write_file("registry.yaml", GOOD))
    (system,) = reg.systems
    assert system.name == "市政务服务门户" and system.cii and system.mlps_level == 3
    assert [e.hostname for e in system.endpoints] == ["portal.gov.example.cn", "10.20.1.5"]
    assert system.endpoints[0].declared_ports == (443,)
    assert reg.scope.allows_address("2001:db8:20::1") and not reg.scope.allows_address("10.21.0.1")
    assert reg.scope.allows_name("portal.gov.example.cn") and not reg.scope.allows_name("evilgov.example.cn")


def test_every_error_is_reported_with_file_and_line(write_file: Callable[[str, str], Path]) -> None:
    path = write_file("bad.yaml", BAD)
    with pytest.raises(InputError) as err:
        load_registry(path)
    text = str(err.value)
    lines = {p.message: p.line for p in err.value.problems}
    assert all(p.file == str(path) for p in err.value.problems)
    assert any("10.300.0.0/16" in m and lines[m] == 2 for m in lines), text
    assert any("tier" in m and lines[m] == 14 for m in lines), text
    assert any("mlps_level" in m and lines[m] == 15 for m in lines), text
    assert any("ftp://" in m and lines[m] == 17 for m in lines), text
    assert any("unknown key 'colour'" in m and lines[m] == 20 for m in lines), text


def test_duplicates_and_scope_are_checked_across_files(write_file: Callable[[str, str], Path]) -> None:
    write_file("reg/a.yaml", GOOD)
    write_file(
        "reg/b.yaml",
        """
        systems:
          - id: city-portal
            name: Dup
            owner: {department: IT}
            tier: city
            mlps_level: 2
            endpoints: [{url: "https://portal.gov.example.cn/"}]
          - id: rogue
            name: Rogue
            owner: {department: IT}
            tier: street
            mlps_level: 2
            endpoints:
              - url: https://www.example.org/
        """,
    )
    with pytest.raises(InputError) as err:
        load_registry(write_file("x", "").parent / "reg")
    msgs = [str(p) for p in err.value.problems]
    assert any("b.yaml:2: duplicate system id 'city-portal'" in m and "a.yaml:4" in m for m in msgs), msgs
    assert any("b.yaml:14:" in m and "www.example.org" in m and "outside the declared scope" in m for m in msgs), msgs


def test_missing_scope_and_syntax_errors() -> None:
    with pytest.raises(InputError, match="scope"):
        build_registry([("r.yaml", load_yaml_text("systems: []\n", "r.yaml"))])


def test_url_credentials_are_refused_without_echoing_the_password(
    write_file: Callable[[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_file(
        "creds.yaml",
        """
        scope: {allow: ["10.20.0.0/16"]}
        systems:
          - id: admin-ui
            name: Admin UI
            owner: {department: IT}
            tier: city
            mlps_level: 2
            endpoints:
              - url: http://admin:s3cr3t-pw@10.20.1.5/
              - host: "root:hunter2@10.20.1.6"
        """,
    )
    assert main(["registry", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert "s3cr3t-pw" not in captured.err + captured.out and "hunter2" not in captured.err + captured.out
    assert f"{path}:9:" in captured.err and "credentials" in captured.err
    assert f"{path}:10:" in captured.err
    assert "Traceback" not in captured.err


WIDE = """
scope:
  allow:
    - 10.20.0.0/16
    - 0.0.0.0/0
    - ::/0
    - cn
systems:
  - id: web
    name: Web
    owner: {department: IT}
    tier: city
    mlps_level: 2
    endpoints:
      - url: https://portal.gov.example.cn/
      - host: 10.20.1.5
"""


def test_a_scope_wider_than_the_limit_needs_an_explicit_override(
    write_file: Callable[[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    wide = write_file("wide.yaml", WIDE)
    with pytest.raises(InputError) as err:
        load_registry(wide)
    assert [(p.line, p.message.split("'")[1]) for p in err.value.problems] == [(4, "0.0.0.0/0"), (5, "::/0"), (6, "cn")]
    assert "allow_wide" in err.value.problems[0].message
    assert main(["registry", "validate", str(wide)]) == 2
    # the limit is a parameter: a stricter site can refuse a /16 too
    narrow = write_file("narrow.yaml", "scope: {allow: [10.20.0.0/16]}\nsystems: []\n")
    with pytest.raises(InputError, match=r"wider than a /24"):
        load_registry(narrow, widest_v4=24)
    capsys.readouterr()

    allowed = write_file("allowed.yaml", WIDE.replace("scope:\n", "scope:\n  allow_wide: true\n"))
    reg = load_registry(allowed)
    assert reg.scope.allow_wide and reg.scope.allows_address("192.0.2.1")
    assert main(["registry", "validate", str(allowed)]) == 0
    out = capsys.readouterr().out
    assert "4,294,967,296 IPv4 + 2^128 IPv6 addresses, 1 DNS suffix, 2 registered host names" in out, out


def test_the_override_covers_only_its_own_file(
    write_file: Callable[[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("reg/a.yaml", "scope: {allow_wide: true, allow: [10.0.0.0/7]}\nsystems: []\n")
    b = write_file("reg/b.yaml", "scope:\n  allow: [172.16.0.0/4]\n  deny: [172.16.0.0/12]\nsystems: []\n")
    with pytest.raises(InputError) as err:
        load_registry(b.parent)
    assert [(p.file, p.line) for p in err.value.problems] == [(str(b), 2)]
    ok = write_file("ok.yaml", "scope:\n  allow: [10.20.0.0/16, gov.example.cn]\n  deny: [10.20.9.0/24]\nsystems: []\n")
    assert main(["registry", "validate", str(ok)]) == 0
    assert "scope: 65,280 IPv4 + 0 IPv6 addresses, 1 DNS suffix, 0 registered" in capsys.readouterr().out
