"""engine/conditions.py: three-valued conditions (a missing field is unknown) and the schema that refuses bad ones."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sentinel.engine.conditions import Condition, compile_condition


def cond(tree: dict[str, object]) -> Callable[[dict[str, object]], bool | None]:
    compiled = compile_condition(Condition.model_validate(tree))
    return lambda data: compiled(data.get)


def test_three_valued_logic() -> None:
    c = cond({"all": [{"field": "a", "op": "eq", "value": 1}, {"field": "b", "op": "gt", "value": 2}]})
    assert c({"a": 1, "b": 3}) is True
    assert c({"a": 2}) is False  # a definite False wins over an unknown
    assert c({"a": 1}) is None  # b unknown: neither pass nor fail
    d = cond({"any": [{"field": "a", "op": "eq", "value": 1}, {"not": {"field": "b", "op": "exists"}}]})
    assert d({"b": 1}) is None and d({"a": 0, "b": 1}) is False and d({}) is True and d({"a": 1}) is True
    assert cond({"field": "x", "op": "lt", "value": 5})({"x": "text"}) is None  # type mismatch is unknown
    assert cond({"field": "x", "op": "matches", "value": "^nginx/1\\."})({"x": "nginx/1.18"}) is True
    assert cond({"field": "x", "op": "in", "value": ["TLSv1"]})({"x": "TLSv1"}) is True


@pytest.mark.parametrize(
    "tree",
    [
        {"field": "a"},
        {"field": "a", "op": "lt"},
        {"field": "a", "op": "in", "value": 3},
        {"field": "a", "op": "matches", "value": "("},
        {"all": [], "field": "a", "op": "exists"},
        {"field": "a", "op": "exists", "value": 1},
        {"field": "a", "op": "eval", "value": "__import__('os')"},
    ],
)
def test_bad_conditions_are_rejected(tree: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Condition.model_validate(tree)
