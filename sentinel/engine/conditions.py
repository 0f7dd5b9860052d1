"""Declarative rule conditions, compiled to closures. No `eval`, no attribute access, no imports.

A condition is a tree of mappings:

    all: [cond, ...]      true when every child is true
    any: [cond, ...]      true when some child is true
    not: cond
    {field: NAME, op: OP, value: V}
    {field: NAME, op: OP, value_field: OTHER}   compared with another field of the same observation

Evaluation is three-valued: a field that the observation does not carry makes a comparison
*unknown* (None), which is neither a pass nor a failure. That is what keeps "could not observe"
from ever resolving a finding or counting as compliant.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from sentinel.engine.regex import compile_rule_regex

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
    #: compare with this field of the same observation instead of a constant (e.g. the vantage an observation was
    #: made from against the vantages its endpoint is declared reachable from)
    value_field: str | None = None

    @field_validator("value")
    @classmethod
    def _pattern(cls, value: Any, info: ValidationInfo) -> Any:
        """A `matches` pattern is compiled here, so a refused one is reported at its own `value:` line."""
        if info.data.get("op") == "matches" and isinstance(value, str):
            compile_rule_regex(value)  # ValueError: invalid, or not safe to run (sentinel.engine.regex)
        return value

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        kinds = [k for k in ("all_", "any_", "not_", "field") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a condition node needs exactly one of 'all', 'any', 'not' or 'field'")
        if self.field is not None:
            if self.op is None:
                raise ValueError(f"condition on '{self.field}' needs an 'op'")
            if self.value_field is not None:
                if self.value is not None:
                    raise ValueError("give 'value' or 'value_field', not both")
                if self.op in _NO_VALUE_OPS or self.op == "matches":
                    raise ValueError(f"op '{self.op}' cannot compare with another field ('value_field')")
                return self
            if self.op in _NO_VALUE_OPS and self.value is not None:
                raise ValueError(f"op '{self.op}' takes no 'value'")
            if self.op not in _NO_VALUE_OPS and self.value is None:
                raise ValueError(f"op '{self.op}' needs a 'value' (or a 'value_field')")
            if self.op in ("in", "not_in") and not isinstance(self.value, list):
                raise ValueError(f"op '{self.op}' needs a list 'value'")
            if self.op == "matches" and not isinstance(self.value, str):
                raise ValueError("op 'matches' needs a regular-expression string")
            if self.op in ("lt", "le", "gt", "ge") and (
                isinstance(self.value, bool) or not isinstance(self.value, int | float | str)
            ):
                raise ValueError(f"op '{self.op}' needs a number or string 'value'")
        elif self.op is not None or self.value is not None or self.value_field is not None:
            raise ValueError("'op', 'value' and 'value_field' belong next to 'field'")
        return self

    def fields(self) -> set[str]:
        """Every observation field this condition reads (for indexing and evidence)."""
        if self.field is not None:
            return {self.field} if self.value_field is None else {self.field, self.value_field}
        children = self.all_ or self.any_ or ([self.not_] if self.not_ else [])
        out: set[str] = set()
        for child in children:
            out |= child.fields()
        return out

    def depth(self) -> int:
        children = self.all_ or self.any_ or ([self.not_] if self.not_ else [])
        return 1 + max((c.depth() for c in children), default=0)


_ORDERED: dict[str, Callable[[Any, Any], bool]] = {  # the C functions: no Python frame per comparison
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
_CONTAINERS = (str, list, tuple, dict)


def _leaf(name: str, op: str, value: Any) -> Compiled:
    """One comparison, fused with the field lookup; each op gets its own closure (this is the hot path)."""
    match op:
        case "exists":
            return lambda get: get(name) is not None
        case "missing":
            return lambda get: get(name) is None
        case "eq":

            def eq(get: Getter) -> Tri:
                x = get(name)
                return None if x is None else x == value

            return eq
        case "ne":

            def ne(get: Getter) -> Tri:
                x = get(name)
                return None if x is None else x != value

            return ne
        case "in" | "not_in":
            members = frozenset(value) if all(isinstance(v, str | int | float) for v in value) else tuple(value)
            negate = op == "not_in"

            def member(get: Getter) -> Tri:
                x = get(name)
                if x is None:
                    return None
                try:
                    return (x in members) != negate
                except TypeError:  # an unhashable observed value against a frozenset
                    return (x in list(members)) != negate

            return member
        case "contains" | "not_contains":
            negate = op == "not_contains"

            def contains(get: Getter) -> Tri:
                x = get(name)
                if not isinstance(x, _CONTAINERS):
                    return None
                if isinstance(x, str) and not isinstance(value, str):
                    return None
                return (value in x) != negate

            return contains
        case "matches":
            search = compile_rule_regex(value)  # linear time, reads a bounded prefix of the field

            def matches(get: Getter) -> Tri:
                x = get(name)
                return search(x) if isinstance(x, str) else None

            return matches
    fn = _ORDERED[op]
    if isinstance(value, str):

        def ordered_text(get: Getter) -> Tri:
            x = get(name)
            return fn(x, value) if x.__class__ is str else None

        return ordered_text

    def ordered_number(get: Getter) -> Tri:
        x = get(name)
        cls = x.__class__
        return fn(x, value) if cls is float or cls is int else None  # bool (an int subclass) is not a number here

    return ordered_number


def _against_field(name: str, op: str, other: str) -> Compiled:
    """A comparison with another field of the same observation: unknown when either is missing, or when the two
    cannot be compared (a membership test on something that is not a list, an order between a number and text)."""
    negate = op in ("ne", "not_in", "not_contains")

    def compare(get: Getter) -> Tri:
        x, y = get(name), get(other)
        if x is None or y is None:
            return None
        if op in ("eq", "ne"):
            return bool(x == y) != negate
        if op in ("in", "not_in"):
            return (x in y) != negate if isinstance(y, list | tuple) else None
        if op in ("contains", "not_contains"):
            if not isinstance(x, _CONTAINERS) or (isinstance(x, str) and not isinstance(y, str)):
                return None
            return (y in x) != negate
        numbers = all(v.__class__ is int or v.__class__ is float for v in (x, y))
        return bool(_ORDERED[op](x, y)) if numbers or (isinstance(x, str) and isinstance(y, str)) else None

    return compare


def _all_eq_then(name: str, value: Any, second: Compiled) -> Compiled:
    """`all: [{field: name, op: eq, value: value}, second]` with the equality inlined: the commonest shape
    (a status or flag check before a threshold), one Python call fewer than the general form."""

    def all_eq_then(get: Getter) -> Tri:
        x = get(name)
        a = None if x is None else x == value
        if a is False:
            return False
        b = second(get)
        if b is False:
            return False
        return None if a is None or b is None else True

    return all_eq_then


def compile_condition(cond: Condition) -> Compiled:
    """Turn a validated condition into a fast closure over a field getter."""
    if cond.depth() > _MAX_DEPTH:
        raise ValueError(f"condition nested deeper than {_MAX_DEPTH} levels")
    return _compile(cond)


def _compile(cond: Condition) -> Compiled:
    if cond.field is not None:
        assert cond.op is not None
        if cond.value_field is not None:
            return _against_field(cond.field, cond.op, cond.value_field)
        return _leaf(cond.field, cond.op, cond.value)
    if cond.not_ is not None:
        inner = _compile(cond.not_)

        def negate(get: Getter) -> Tri:
            r = inner(get)
            return None if r is None else not r

        return negate
    children = [_compile(c) for c in (cond.all_ or cond.any_ or [])]
    if cond.all_ is not None:
        if len(children) == 1:
            return children[0]
        if len(children) == 2:
            first, second = children
            head = cond.all_[0]
            if head.field is not None and head.op == "eq" and head.value_field is None:
                return _all_eq_then(head.field, head.value, second)

            def all_two(get: Getter) -> Tri:
                a = first(get)
                if a is False:
                    return False
                b = second(get)
                if b is False:
                    return False
                return None if a is None or b is None else True

            return all_two

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
    if len(children) == 1:
        return children[0]

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
