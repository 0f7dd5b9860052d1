"""The observation kinds Sentinel produces, for `sentinel rules lint` (a rule on any other kind never fires).

Where they come from, without anything to keep in step by hand:

- every probe in `BUILTIN_PROBES` has a `kind` (what its error observations carry, and most of what it reports);
- some probes report more than that one kind (`tcp_ports` is `host` and also reports each `port`), and the
  traffic detectors declare none: their kinds are the string literals they pass when they build an observation
  (`Observation(kind="port")`, `ctx.observation("traffic.portscan", ...)`, or a module constant such as
  `CAPTURE_KIND = "traffic.capture"`). Those are read from the source of `sentinel.collectors` and
  `sentinel.traffic` (parsed, never imported or run).

A kind built at run time (not a literal) would be missed; `EXTRA_KINDS` is the place to list such a kind.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

#: kinds that some producer makes but that the source scan cannot see (none today)
EXTRA_KINDS: frozenset[str] = frozenset()
#: the packages whose modules build observations
PRODUCER_PACKAGES = ("sentinel.collectors", "sentinel.traffic")
#: callables that build an observation, and where their kind is when given positionally
_BUILDERS = {"Observation": None, "observation": 0, "service_observation": 0}


@lru_cache(maxsize=1)
def observation_kinds() -> frozenset[str]:
    """Every kind a built-in probe or traffic detector can report."""
    from sentinel.collectors import BUILTIN_PROBES

    kinds = {probe.kind for probe in BUILTIN_PROBES.values()} | set(EXTRA_KINDS)
    for package in PRODUCER_PACKAGES:
        for file in _package_files(package):
            kinds |= literal_kinds(file.read_text(encoding="utf-8"))
    return frozenset(kinds)


def _package_files(package: str) -> list[Path]:
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    return sorted(file for root in roots for file in Path(root).rglob("*.py"))


def literal_kinds(source: str) -> set[str]:
    """The kinds a module passes as literals (or module-level string constants) where it builds observations."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }

    def text(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name):
            return constants.get(expr.id)
        return None

    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name not in _BUILDERS:
            continue
        candidates = [k.value for k in node.keywords if k.arg == "kind"]
        position = _BUILDERS[name]
        if position is not None and len(node.args) > position:
            candidates.append(node.args[position])
        found.update(kind for kind in map(text, candidates) if kind)
    return found
