"""The observation kinds Sentinel produces, for `sentinel rules lint` (a rule on any other kind never fires).

Where they come from, without anything to keep in step by hand:

- every probe in `BUILTIN_PROBES` has a `kind` (what its error observations carry, and most of what it reports);
- some probes report more than that one kind (`tcp_ports` is `host` and also reports each `port`), and the
  traffic detectors declare none: their kinds are the string literals they pass when they build an observation
  (`Observation(kind="port")`, `ctx.observation("traffic.portscan", ...)`, or a module constant such as
  `CAPTURE_KIND = "traffic.capture"`). Those are read from the source of `sentinel.collectors` and
  `sentinel.traffic` (parsed, never imported or run).

A kind built at run time (not a literal) would be missed; `EXTRA_KINDS` is the place to list such a kind.

The data fields of each kind are declared where they are made: each probe's `fields` (with what the runner adds
to a failed job's error observation, `Probe.reported_fields`), each traffic detector's `fields` and the live
capture's. Rules may also read the observation's own attributes (`ATTRIBUTE_FIELDS`). tests/test_ruledev_fields.py
runs the probes and detectors and checks every field they report is declared.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from sentinel.models import Observation

#: kinds that some producer makes but that the source scan cannot see (none today)
EXTRA_KINDS: frozenset[str] = frozenset()
#: the packages whose modules build observations
PRODUCER_PACKAGES = ("sentinel.collectors", "sentinel.traffic")
#: callables that build an observation, and where their kind is when given positionally
_BUILDERS = {"Observation": None, "observation": 0, "service_observation": 0}
#: what a rule may read of any observation besides its data (`Observation.get`): status, error, kind, target...
ATTRIBUTE_FIELDS = frozenset(f.name for f in dataclasses.fields(Observation)) - {"data", "observed_at"}


@lru_cache(maxsize=1)
def declared_fields() -> dict[str, frozenset[str]]:
    """Per observation kind, the data fields its producers declare (the union over producers of one kind)."""
    from sentinel.collectors import BUILTIN_PROBES

    out: dict[str, frozenset[str]] = {}

    def add(declared: Mapping[str, frozenset[str]]) -> None:
        for kind, names in declared.items():
            out[kind] = out.get(kind, frozenset()) | names

    for probe in BUILTIN_PROBES.values():
        add(probe.reported_fields())
    for declared in traffic_producers().values():
        add(declared)
    return out


def traffic_producers() -> dict[type, Mapping[str, frozenset[str]]]:
    """The classes of `sentinel.traffic` that declare the fields they report (the detectors, the live capture),
    each with its declaration."""
    package = importlib.import_module("sentinel.traffic")
    found: dict[type, Mapping[str, frozenset[str]]] = {}
    for info in pkgutil.walk_packages(package.__path__, "sentinel.traffic."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            declared = getattr(cls, "fields", None)
            if cls.__module__ == module.__name__ and isinstance(declared, Mapping):
                found[cls] = declared
    return found


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
