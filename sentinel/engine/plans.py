"""Plans: per observation kind and system, the rules that apply and their skip index (worked out once)."""

from __future__ import annotations

from sentinel.engine.ruleset import RuleSet
from sentinel.engine.skip import Plan
from sentinel.registry.models import Registry


class Plans:
    """kind → system id → Plan. Depends only on the rules and the registry, so it outlives every call."""

    def __init__(self, rules: RuleSet, registry: Registry) -> None:
        self.rules = rules
        self.registry = registry
        self.systems = dict(registry.by_id)  # a plain dict: the model's cached property is slow per lookup
        self.by_kind: dict[str, dict[str, Plan]] = {kind: {} for kind in rules.kinds}

    def build(self, kind: str, system_id: str) -> Plan | None:
        """The plan of a kind this engine reads, for a system not planned yet (None: not registered)."""
        system = self.systems.get(system_id)
        if system is None:
            return None
        entries = self.rules.applicable(kind, system, self.registry)
        plan = self.by_kind[kind][system_id] = Plan(system, entries, self.rules.index(kind, system, self.registry))
        return plan
