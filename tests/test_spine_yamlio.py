from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.errors import InputError
from sentinel.yamlio import MAX_BYTES, LineDict, line_of, load_yaml_file, load_yaml_text


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
