from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.cli.main import main
from sentinel.errors import InputError
from sentinel.registry.csv_import import csv_to_registry
from sentinel.registry.loader import load_registry
from sentinel.yamlio import load_yaml_text

GOOD = """
scope:
  allow: ["10.20.0.0/16", "2001:db8:20::/48", "gov.example.cn"]
systems:
  - id: city-portal
    name: 市政务服务门户
    owner: {department: 市大数据管理中心, contact: 张工, email: ops@example.cn}
    tier: city
    mlps_level: 3
    cii: true
    endpoints:
      - url: https://portal.gov.example.cn/
      - host: 10.20.1.5
        ports: [22, 443]
    tags: [e-gov]
"""

BAD = """
scope:
  allow: ["10.20.0.0/16", "10.300.0.0/16", "gov.example.cn"]
systems:
  - id: city-portal
    name: Portal
    owner: {department: IT}
    tier: city
    mlps_level: 3
    endpoints:
      - url: https://portal.gov.example.cn/
  - id: city-portal
    name: Portal again
    owner: {department: IT}
    tier: town
    mlps_level: 7
    endpoints:
      - url: ftp://portal.gov.example.cn/
  - id: outside
    name: Outside
    owner: {department: IT, colour: red}
    tier: district
    mlps_level: 2
    endpoints:
      - host: 192.0.2.10
        ports: [22]
"""


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
        from sentinel.registry.loader import build_registry

        build_registry([("r.yaml", load_yaml_text("systems: []\n", "r.yaml"))])


def test_cli_exit_codes_and_no_traceback(
    write_file: Callable[[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_file("good.yaml", GOOD)
    assert main(["registry", "validate", str(good)]) == 0
    assert "1 systems" in capsys.readouterr().out
    bad = write_file("bad.yaml", BAD)
    assert main(["registry", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{bad}:2:" in err and "problems found" in err
    broken = write_file("broken.yaml", "systems:\n  - id: [unclosed\n")
    assert main(["registry", "validate", str(broken)]) == 2
    assert f"{broken}:" in capsys.readouterr().err
    assert main(["registry", "validate", str(good.parent / "absent.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


CSV = """系统编号,系统名称,责任部门,联系人,邮箱,层级,等保级别,关键信息基础设施,网址,IP地址,端口,标签
city-portal,市政务服务门户,市大数据管理中心,张工,ops@example.cn,市级,三级,是,https://portal.gov.example.cn/,10.20.1.5,22;443,e-gov
district-mail,区政务邮件,区政务服务中心,李工,mail@example.cn,district,2,否,,10.20.8.25,25，465,mail
"""


def test_csv_import_round_trips_through_the_validator() -> None:
    text = csv_to_registry(CSV, "systems.csv", scope=["10.20.0.0/16", "gov.example.cn"])
    from sentinel.registry.loader import build_registry

    reg = build_registry([("out.yaml", load_yaml_text(text, "out.yaml"))])
    assert [s.id for s in reg.systems] == ["city-portal", "district-mail"]
    assert reg.systems[0].tier.value == "city" and reg.systems[0].mlps_level == 3 and reg.systems[0].cii
    assert reg.systems[1].endpoints[0].ports == [25, 465]


def test_csv_import_infers_the_narrowest_scope_and_reports_csv_lines(tmp_path: Path) -> None:
    text = csv_to_registry(CSV, "systems.csv")
    assert "10.20.1.5/32" in text and "portal.gov.example.cn" in text
    bad = CSV + "bad-one,坏系统,某部门,,not-an-email,区级,九级,否,,10.20.9.9,,\n"
    with pytest.raises(InputError) as err:
        csv_to_registry(bad, "systems.csv")
    assert {p.line for p in err.value.problems} == {4}, err.value.problems
    assert main(["registry", "import", str(tmp_path / "nope.csv")]) == 2


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
