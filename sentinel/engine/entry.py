"""A rule ready to run (`Entry`) and the flat field view of an observation that its condition reads."""

from __future__ import annotations

from typing import Any, NamedTuple

from sentinel.engine.conditions import Compiled
from sentinel.engine.rule import Rule
from sentinel.engine.stateful_spec import STATEFUL_KEYS
from sentinel.models import Observation

# The observation's own attributes, which win over data keys of the same name (see `field_view`).
ATTRIBUTE_FIELDS = frozenset({"status", "error", "kind", "target", "probe", "system_id", "site", "vantage"})


class Entry(NamedTuple):
    """A rule ready to run: the compiled condition and evidence fields, read once from the model."""

    rule: Rule
    test: Compiled
    evidence_fields: tuple[str, ...]
    stateful: bool
    gate_only: bool  # stateful only through `for`/`clear_after` (no feature, no flapping)
    lazy_state: bool  # no feature: keeps no memory of a target until its condition first holds
    number: int  # the rule's position in its RuleSet (a cheap key that stays unique if two ids clash)
    guard: Compiled | None  # the rule's `when` alone (stateful rules check it before touching their memory)

    @classmethod
    def of(cls, rule: Rule, number: int) -> Entry:
        featureless = all(getattr(rule, k) is None for k in STATEFUL_KEYS)
        gate_only = rule.stateful and rule.flapping is None and featureless
        return cls(
            rule,
            rule.compiled,
            rule.evidence_fields,
            rule.stateful,
            gate_only,
            rule.stateful and featureless,
            number,
            rule.guard,
        )


def field_view(obs: Observation) -> dict[str, Any]:
    """The observation flattened into one mapping, as rules read it (attributes win over data keys)."""
    view = dict(obs.data)
    view["status"] = obs.status._value_  # the plain value, without the enum's descriptor lookup
    view["error"] = obs.error
    view["kind"] = obs.kind
    view["target"] = obs.target
    view["probe"] = obs.probe
    view["system_id"] = obs.system_id
    # who observed: stamped by `Sentinel.ingest`; unset (None) a rule on them cannot tell
    view["site"] = obs.site
    view["vantage"] = obs.vantage._value_ if obs.vantage is not None else None
    return view
