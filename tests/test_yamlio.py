"""yamlio.py, the one YAML reader: lines of keys and items, duplicate keys, size, depth and NUL limits, and alias
bombs refused by what their aliases expand to, not only by how many aliases there are."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.cli.main import main
from sentinel.errors import InputError
from sentinel.yamlio import (
    LOADER,
    MAX_ALIAS_NODES,
    MAX_ALIASES,
    MAX_BYTES,
    MAX_DEPTH,
    LineDict,
    LineList,
    _LibyamlLoader,
    _PythonLoader,
    line_of,
    load_yaml_file,
    load_yaml_text,
)
from tests.support.yaml_bombs import shared_alias_bomb


def test_lines_are_tracked_for_keys_and_items() -> None:
    data = load_yaml_text("a: 1\nb:\n  - x: 1\n  - x: 2\n    y: 3\n", "f.yaml")
    assert isinstance(data, LineDict)
    assert line_of(data, ("b", 1, "y")) == 5
    assert line_of(data, ("b", 0)) == 3
    assert line_of(data, ("missing",)) == 1


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    with pytest.raises(InputError) as err:
        load_yaml_text("a: 1\nb: 2\na: 3\n", "dup.yaml")
    (problem,) = err.value.problems
    assert (problem.file, problem.line) == ("dup.yaml", 3)
    assert "duplicate key 'a'" in problem.message and "line 1" in problem.message


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(InputError) as err:
        load_yaml_text("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    assert str(err.value).startswith("bad.yaml:")
    assert err.value.problems[0].line is not None


def test_alias_bomb_is_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for i in range(30):
        name = f"l{i}"
        bomb += f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        prev = name
    with pytest.raises(InputError, match="YAML bomb"):
        load_yaml_text(bomb, "bomb.yaml")


def test_python_tags_are_refused() -> None:
    with pytest.raises(InputError, match=r"bad\.yaml"):
        load_yaml_text("a: !!python/object/apply:os.system ['true']\n", "bad.yaml")


def test_oversized_and_undecodable_files(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (MAX_BYTES + 1))
    with pytest.raises(InputError, match="limit"):
        load_yaml_file(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_yaml_file(binary)
    with pytest.raises(InputError, match="cannot read"):
        load_yaml_file(tmp_path / "absent.yaml")


def test_nul_byte_is_a_located_problem_not_a_traceback(tmp_path: Path) -> None:
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"scope:\n  allow: [10.0.0.0/8]\nsystems: []\x00\n")
    with pytest.raises(InputError) as err:
        load_yaml_file(nul)
    (problem,) = err.value.problems
    assert (problem.file, problem.line) == (str(nul), 3)
    assert "#x0000" in problem.message and "not allowed" in problem.message


def test_deep_nesting_is_refused_with_its_line() -> None:
    for opener, closer in (("[", "]"), ("{a: ", "}")):
        text = "ok: 1\nnested: " + opener * 5000 + closer * 5000 + "\n"
        with pytest.raises(InputError) as err:
            load_yaml_text(text, "deep.yaml")
        (problem,) = err.value.problems
        assert (problem.file, problem.line) == ("deep.yaml", 2)
        assert f"more than {MAX_DEPTH} levels" in problem.message
    block = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * (MAX_DEPTH + 1) + "leaf: 1\n"
    with pytest.raises(InputError) as err:
        load_yaml_text(block, "block.yaml")
    assert err.value.problems[0].line == MAX_DEPTH + 1
    # the limit itself still loads, so ordinary files are unaffected
    ok = load_yaml_text("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n", "ok.yaml")
    assert isinstance(ok["x"], list)


def test_every_yaml_entry_point_refuses_deep_and_nul_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Registry, settings and rules all read through yamlio: exit 2 with FILE:LINE, no traceback."""
    levels = 3000
    registry = tmp_path / "registry.yaml"
    registry.write_text("scope: {allow: [10.0.0.0/8]}\nsystems: " + "[" * 5000 + "]" * 5000 + "\n")
    settings = tmp_path / "sentinel.yaml"
    settings.write_text("collectors: " + "{a: " * levels + "1" + "}" * levels + "\n")
    rules = tmp_path / "rules" / "x"
    rules.mkdir(parents=True)
    condition = "{not: " * levels + "{field: a, op: eq, value: 1}" + "}" * levels
    (rules / "deep_rule.yaml").write_text(
        "id: deep_rule\ntitle: t\ndescription: d\nseverity: low\ncategory: exposure\nobservation: banner\n"
        f"condition: {condition}\nremediation: r\n"
    )
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"collectors: {}\x00\n")
    cases = [
        (["registry", "validate", str(registry)], f"{registry}:2:"),
        (["config", "show", "--config", str(settings)], f"{settings}:1:"),
        (["rules", "lint", str(rules)], f"{rules / 'deep_rule.yaml'}:7:"),
        (["config", "show", "--config", str(nul)], f"{nul}:1:"),
        (["registry", "validate", str(nul)], f"{nul}:1:"),
    ]
    for argv, where in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert where in err and "Traceback" not in err, (argv, err)


def test_a_bomb_under_the_alias_count_is_refused_at_the_alias_that_crosses_the_limit() -> None:
    text = "sinks:\n  bomb:\n" + shared_alias_bomb(indent="    ")
    assert text.count("*") < MAX_ALIASES  # the old check let it through
    with pytest.raises(InputError) as err:
        load_yaml_text(text, "bomb.yaml")
    (problem,) = err.value.problems
    assert problem.file == "bomb.yaml" and problem.line == 8  # l5: 9 x l4 (66,430 nodes each)
    assert f"more than {MAX_ALIAS_NODES:,} nodes" in problem.message and "YAML bomb" in problem.message


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {k: *a}\n", "&a [1, [2, *a]]\n"])
def test_an_alias_inside_its_own_anchor_is_refused(text: str) -> None:
    with pytest.raises(InputError, match=r"f\.yaml:1: alias \*a refers to a node that contains it"):
        load_yaml_text(text, "f.yaml")


def test_ordinary_aliases_and_merge_keys_still_load() -> None:
    data = load_yaml_text("base: &b {x: 1, y: [1, 2]}\none: *b\ntwo: {<<: *b, z: 3}\nkey: &k name\n*k : 4\n", "f")
    assert data["one"] == {"x": 1, "y": [1, 2]} and data["two"] == {"x": 1, "y": [1, 2], "z": 3}
    assert data["name"] == 4


def test_many_aliases_of_a_modest_block_load() -> None:
    block = "{" + ", ".join(f"k{i}: v" for i in range(100)) + "}"
    items = "\n".join("  - *d" for _ in range(MAX_ALIASES - 1))
    data = load_yaml_text(f"defaults: &d {block}\nitems:\n{items}\n", "f")  # 199 x 201 nodes: under the limit
    assert len(data["items"]) == MAX_ALIASES - 1


def _lines(data: object) -> object:
    """The data with every key's and item's line, to compare two loaders' trees."""
    if isinstance(data, LineDict):
        return {k: (data.key_lines[k], _lines(v)) for k, v in data.items()}
    if isinstance(data, LineList):
        return [(line, _lines(v)) for line, v in zip(data.item_lines, data, strict=True)]
    return data


def test_libyaml_and_python_parsers_give_the_same_trees_and_problems() -> None:
    """libyaml does the scanning when PyYAML has it; every file and every refusal reads the same either way."""
    assert LOADER is _LibyamlLoader, "PyYAML without libyaml: the fast parser is not in use"
    shipped = sorted(Path("rules").rglob("*.yaml")) + sorted(Path("docs/examples").rglob("*.yaml"))
    assert len(shipped) > 100
    for path in shipped:
        text = path.read_text()
        fast, slow = (_lines(load_yaml_text(text, str(path), cls)) for cls in (_LibyamlLoader, _PythonLoader))
        assert fast == slow, path
    bad = {
        "dup": "a: 1\nb: 2\na: 3\n",
        "syntax": "a: 1\nb: [1, 2\nc: 3\n",
        "nul after wide characters": "名称: 市政务门户\n说明: 第二行\nc: x\x00\n",
        "deep": "ok: 1\nnested: " + "[" * 5000 + "]" * 5000 + "\n",
        "cycle": "a: &a [*a]\n",
        "bomb": "sinks:\n  bomb:\n" + shared_alias_bomb(indent="    "),
        "tag": "a: !!python/object:os.system x\n",
    }
    for name, text in bad.items():
        found = []
        for cls in (_LibyamlLoader, _PythonLoader):
            with pytest.raises(InputError) as err:
                load_yaml_text(text, "f.yaml", cls)
            found.append([(p.file, p.line) for p in err.value.problems])
        assert found[0] == found[1], name
    with pytest.raises(InputError) as err:
        load_yaml_text(bad["nul after wide characters"], "f.yaml")
    assert err.value.problems[0].line == 3  # libyaml's byte offset is turned into the right line
