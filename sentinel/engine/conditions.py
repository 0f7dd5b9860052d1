"""Declarative rule conditions, compiled to closures. No `eval`, no attribute access, no imports.

A condition is a tree of mappings:

    all: [cond, ...]      true when every child is true
    any: [cond, ...]      true when some child is true
    not: cond
    {field: NAME, op: OP, value: V}

Evaluation is three-valued: a field that the observation does not carry makes a comparison
*unknown* (None), which is neither a pass nor a failure. That is what keeps "could not observe"
from ever resolving a finding or counting as compliant.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Tri = bool | None
Getter = Callable[[str], Any]
Compiled = Callable[[Getter], Tri]

Op = Literal[
    "eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "not_contains", "matches", "exists", "missing"
]
_NO_VALUE_OPS = {"exists", "missing"}
_MAX_DEPTH = 16


class Condition(BaseModel):
    """One node of a condition tree (validated strictly: unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    all_: list[Condition] | None = Field(default=None, alias="all")
    any_: list[Condition] | None = Field(default=None, alias="any")
    not_: Condition | None = Field(default=None, alias="not")
    field: str | None = None
    op: Op | None = None
    value: Any = None

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        kinds = [k for k in ("all_", "any_", "not_", "field") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a condition node needs exactly one of 'all', 'any', 'not' or 'field'")
        if self.field is not None:
            if self.op is None:
                raise ValueError(f"condition on '{self.field}' needs an 'op'")
            if self.op in _NO_VALUE_OPS and self.value is not None:
                raise ValueError(f"op '{self.op}' takes no 'value'")
            if self.op not in _NO_VALUE_OPS and self.value is None:
                raise ValueError(f"op '{self.op}' needs a 'value'")
            if self.op in ("in", "not_in") and not isinstance(self.value, list):
                raise ValueError(f"op '{self.op}' needs a list 'value'")
            if self.op == "matches":
                if not isinstance(self.value, str):
                    raise ValueError("op 'matches' needs a regular-expression string")
                try:
                    re.compile(self.value)
                except re.error as exc:
                    raise ValueError(f"invalid regular expression {self.value!r}: {exc}") from None
            if self.op in ("lt", "le", "gt", "ge") and (
                isinstance(self.value, bool) or not isinstance(self.value, int | float | str)
            ):
                raise ValueError(f"op '{self.op}' needs a number or string 'value'")
        elif self.op is not None or self.value is not None:
            raise ValueError("'op' and 'value' belong next to 'field'")
        return self

    def fields(self) -> set[str]:
        """Every observation field this condition reads (for indexing and evidence)."""
        if self.field is not None:
            return {self.field}
        children = self.all_ or self.any_ or ([self.not_] if self.not_ else [])
        out: set[str] = set()
        for child in children:
            out |= child.fields()
        return out

    def depth(self) -> int:
        children = self.all_ or self.any_ or ([self.not_] if self.not_ else [])
        return 1 + max((c.depth() for c in children), default=0)


def _compare(op: str, value: Any) -> Callable[[Any], Tri]:
    match op:
        case "eq":
            return lambda x: x == value
        case "ne":
            return lambda x: x != value
        case "in":
            members = value
            return lambda x: x in members
        case "not_in":
            members = value
            return lambda x: x not in members
        case "contains":
            return lambda x: value in x if isinstance(x, str | list | tuple | dict) else None
        case "not_contains":
            return lambda x: value not in x if isinstance(x, str | list | tuple | dict) else None
        case "matches":
            pattern = re.compile(value)
            return lambda x: pattern.search(x) is not None if isinstance(x, str) else None
    ordered: dict[str, Callable[[Any, Any], bool]] = {
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
    }
    fn = ordered[op]

    def compare_ordered(x: Any) -> Tri:
        if isinstance(x, bool) or not isinstance(x, type(value) if isinstance(value, str) else int | float):
            return None
        return fn(x, value)

    return compare_ordered


def compile_condition(cond: Condition) -> Compiled:
    """Turn a validated condition into a fast closure over a field getter."""
    if cond.depth() > _MAX_DEPTH:
        raise ValueError(f"condition nested deeper than {_MAX_DEPTH} levels")
    if cond.field is not None:
        name = cond.field
        assert cond.op is not None
        if cond.op == "exists":
            return lambda get: get(name) is not None
        if cond.op == "missing":
            return lambda get: get(name) is None
        test = _compare(cond.op, cond.value)

        def leaf(get: Getter) -> Tri:
            x = get(name)
            return None if x is None else test(x)

        return leaf
    if cond.not_ is not None:
        inner = compile_condition(cond.not_)

        def negate(get: Getter) -> Tri:
            r = inner(get)
            return None if r is None else not r

        return negate
    children = [compile_condition(c) for c in (cond.all_ or cond.any_ or [])]
    if cond.all_ is not None:

        def all_of(get: Getter) -> Tri:
            unknown = False
            for child in children:
                r = child(get)
                if r is False:
                    return False
                if r is None:
                    unknown = True
            return None if unknown else True

        return all_of

    def any_of(get: Getter) -> Tri:
        unknown = False
        for child in children:
            r = child(get)
            if r is True:
                return True
            if r is None:
                unknown = True
        return None if unknown else False

    return any_of
