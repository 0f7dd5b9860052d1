"""Alias bombs are refused by what their aliases expand to, not only by how many aliases there are."""

from __future__ import annotations

import pytest

from sentinel.errors import InputError
from sentinel.yamlio import MAX_ALIAS_NODES, MAX_ALIASES, load_yaml_text


def shared_alias_bomb(levels: int = 9, width: int = 9, indent: str = "") -> str:
    """`levels` anchors, each a list of `width` aliases to the one before: few aliases, width**levels nodes."""
    lines = [f"{indent}l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


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
