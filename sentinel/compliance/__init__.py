"""Compliance engine: framework files (data) mapped to rules, and per system × requirement verdicts.

Public API (used by reports and metrics):

    from sentinel.compliance import assess, load_frameworks, ratios
    verdicts = assess(store, registry, load_frameworks(), now, rules=app.rules.rules)
    by_department = ratios(verdicts, registry, "department")

Estate scale: `iter_assess(..., select_frameworks(load_frameworks()))` streams verdicts, each system judged
only against the frameworks that apply to it (MLPS at its own level).
"""

from sentinel.compliance.assess import (
    ComplianceVerdict,
    ControlVerdict,
    assess,
    iter_assess,
    select_frameworks,
)
from sentinel.compliance.frameworks import Framework, Mapping, Requirement, known_control_ids, load_frameworks
from sentinel.compliance.order import natural_key
from sentinel.compliance.ratio import Ratio, ratios

__all__ = [
    "ComplianceVerdict",
    "ControlVerdict",
    "Framework",
    "Mapping",
    "Ratio",
    "Requirement",
    "assess",
    "iter_assess",
    "known_control_ids",
    "load_frameworks",
    "natural_key",
    "ratios",
    "select_frameworks",
]
