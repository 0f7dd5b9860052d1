"""registry/csv_import.py and `sentinel registry import`: the owners' spreadsheet (Chinese headers) round-trips through
the validator; big and hostile CSV files are streamed, bounded, with progress and clear refusals."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.registry_import import generate
from sentinel.cli import registry_cmd
from sentinel.cli.main import main
from sentinel.errors import InputError
from sentinel.registry.csv_import import ImportLimits, csv_to_registry, emit_item, import_csv, import_csv_to
from sentinel.registry.loader import build_registry
from sentinel.yamlio import load_yaml_text

SCOPE = ["--scope", "10.0.0.0/8", "--scope", "gov.example.cn"]

CSV = """系统编号,系统名称,责任部门,联系人,邮箱,层级,等保级别,关键信息基础设施,网址,IP地址,端口,标签
city-portal,市政务服务门户,市大数据管理中心,张工,ops@example.cn,市级,三级,是,https://portal.gov.example.cn/,10.20.1.5,22;443,e-gov
district-mail,区政务邮件,区政务服务中心,李工,mail@example.cn,district,2,否,,10.20.8.25,25，465,mail
"""


def test_a_big_csv_streams_in_flat_memory(tmp_path: Path) -> None:
    csv_file, yaml_file = tmp_path / "big.csv", tmp_path / "registry.yaml"
    rows = generate(csv_file, 1)
    limits = ImportLimits(max_bytes=10 << 20, max_rows=rows)
    tracemalloc.start()
    try:
        with yaml_file.open("w", encoding="utf-8") as out:
            result = import_csv_to(csv_file, out, ["10.0.0.0/8", "gov.example.cn"], limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # streamed: a few buffers and the 1 MB spool, not the file (the old importer held it many times over)
    assert peak < 4 << 20, f"peak {peak / 1e6:.1f} MB for a {csv_file.stat().st_size / 1e6:.1f} MB CSV"
    assert result.systems == rows and result.output_bytes == yaml_file.stat().st_size
    text = yaml_file.read_text(encoding="utf-8")
    assert text.count("\n- id: ") == rows and text.startswith("scope:\n")
    head = text[: text.index("\n- id: sys-0000100")]  # the first systems, re-read by the real loader
    reg = build_registry([("out.yaml", load_yaml_text(head, "out.yaml"))])
    assert [s.id for s in reg.systems][:2] == ["sys-0000000", "sys-0000001"]
    assert reg.systems[1].endpoints[1].ports == [22, 443] and reg.systems[0].mlps_level == 2
    # the whole result is valid YAML with every system, too big for one registry file (hence the CLI's warning)
    assert result.output_bytes > 1_000_000


def test_row_and_byte_limits_are_refused_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "systems.csv"
    rows = generate(csv_file, 0.01)
    out = tmp_path / "registry.yaml"
    out.write_text("old: registry\n")
    assert main(["registry", "import", str(csv_file), "-o", str(out), *SCOPE, "--max-rows", "10"]) == 2
    err = capsys.readouterr().err
    assert f"{csv_file}:12: more than 10 rows" in err and "--max-rows" in err and "Traceback" not in err
    assert out.read_text() == "old: registry\n"  # a refused import leaves the previous output alone
    assert not list(tmp_path.glob("*.partial"))
    size = csv_file.stat().st_size
    assert main(["registry", "import", str(csv_file), *SCOPE, "--max-bytes", "1000"]) == 2
    assert f"{csv_file}: file is {size:,} bytes, over the 1,000-byte limit (--max-bytes)" in capsys.readouterr().err
    assert main(["registry", "import", str(csv_file), "-o", str(out), *SCOPE, "--max-rows", str(rows)]) == 0
    assert f"wrote {out}: {rows} systems" in capsys.readouterr().err


def test_progress_lines_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_file = tmp_path / "systems.csv"
    rows = generate(csv_file, 1)
    out = tmp_path / "registry.yaml"
    assert main(["registry", "import", str(csv_file), "-o", str(out), *SCOPE]) == 0
    assert "import:" not in capsys.readouterr().err  # a quick import says nothing every 10 s
    monkeypatch.setattr(registry_cmd, "PROGRESS_INTERVAL", 0.0)
    assert main(["registry", "import", str(csv_file), "-o", str(out), *SCOPE]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("import: ")]
    assert len(lines) >= rows // 2_000, lines
    assert lines[-1].startswith(f"import: {rows:,} rows") and "(100%)" in lines[-1] and "rows/s" in lines[-1]


def test_hostile_csv_gives_located_problems_not_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = "id,name,department,tier,mlps_level,hosts\n"
    huge = tmp_path / "huge_field.csv"
    huge.write_text(header + "a,A,IT,city,2,10.0.0.1\n" + 'b,"' + "x" * 200_000 + '",IT,city,2,10.0.0.2\n')
    assert main(["registry", "import", str(huge)]) == 2
    err = capsys.readouterr().err
    assert f"{huge}:3: CSV error: field larger than field limit" in err and "Traceback" not in err

    many = tmp_path / "many_errors.csv"
    many.write_text(header + "".join(f"bad {i},,,town,9,\n" for i in range(5_000)))
    with pytest.raises(InputError) as exc:
        import_csv(many)
    problems = exc.value.problems
    assert len(problems) <= 501 and any("more problems" in p.message for p in problems)
    assert {p.line for p in problems if p.line} <= set(range(2, 5_002))

    gb = tmp_path / "gb.csv"  # Chinese Excel saves GB18030; the streamed reader starts over in that encoding
    gb.write_bytes(
        ("系统编号,系统名称,责任部门,层级,等保级别,IP地址\nx-1,门户,大数据局,市级,三级,10.0.0.9\n").encode("gb18030")
    )
    assert "name: 门户" in import_csv(gb)


_VALUES = st.recursive(
    st.text(max_size=30) | st.integers(-(10**6), 10**6) | st.booleans(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=1, max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), _VALUES, min_size=1, max_size=6))
def test_the_fast_emitter_round_trips_through_the_yaml_loader(system: dict[str, object]) -> None:
    """The importer writes YAML by hand for speed: whatever a CSV cell holds must read back unchanged."""
    assert load_yaml_text(emit_item(system), "out.yaml") == [system]


def test_csv_import_round_trips_through_the_validator() -> None:
    text = csv_to_registry(CSV, "systems.csv", scope=["10.20.0.0/16", "gov.example.cn"])
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
