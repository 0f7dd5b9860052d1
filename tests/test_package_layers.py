"""The package's layering (docs/architecture.md): a stage imports only earlier stages, so none can reach into a
later one's internals, and there is no import cycle. Read from the source (parsed, not imported)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "sentinel"

#: earlier stages first; a package may import its own rank and lower ones
RANKS: dict[str, int] = {
    **dict.fromkeys(("__init__", "errors", "yamlio", "redact", "textdiff", "paths", "models"), 0),
    **dict.fromkeys(("registry", "store"), 1),
    "config": 2,
    "collectors": 3,
    "traffic": 4,
    "engine": 5,
    **dict.fromkeys(("findings", "compliance"), 6),
    "advisories": 7,
    "ruledev": 8,  # rule tools: above the engine, the compliance frameworks and the traffic detectors
    **dict.fromkeys(("sinks", "reports"), 8),
    "notify": 9,
    "exporter": 10,
    "web": 11,
    **dict.fromkeys(("app", "runtime"), 12),
    **dict.fromkeys(("cli", "demo", "__main__"), 13),
}

#: imports that go up on purpose, each with its reason
ALLOWED_UPWARD = {
    # settings compose every stage's section model (leaf modules that import nothing of their stage)
    ("sentinel.config.settings", "sentinel.findings.policy"),
    ("sentinel.config.settings", "sentinel.notify.settings"),
    ("sentinel.config.settings", "sentinel.runtime.settings"),
    ("sentinel.config.settings", "sentinel.web.settings"),
    ("sentinel.config.settings", "sentinel.collectors"),  # the probes' option models, at validation time
    ("sentinel.config.settings", "sentinel.sinks"),  # the sinks' option models, at validation time
    ("sentinel.config.settings", "sentinel.sinks.settings"),
    ("sentinel.config.settings", "sentinel.sinks.elasticsearch.settings"),
    # the web listener runs an owner's re-check through the composition root (inside the handler)
    ("sentinel.web.listener", "sentinel.app"),
}


def _module(file: Path) -> str:
    parts = file.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(type_checking: bool) -> dict[str, set[str]]:
    """module -> the sentinel modules it imports (at run time, or also those under TYPE_CHECKING)."""
    out: dict[str, set[str]] = defaultdict(set)
    for file in ROOT.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        guarded = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in guarded and not type_checking:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sentinel":
                out[_module(file)].add(node.module)
            elif isinstance(node, ast.Import):
                out[_module(file)] |= {a.name for a in node.names if a.name.split(".")[0] == "sentinel"}
    return out


def upward() -> set[tuple[str, str]]:
    return {
        (module, target)
        for module, targets in imports(type_checking=False).items()
        for target in targets
        if RANKS[_stage(target)] > RANKS[_stage(module)]
    }


def test_every_package_has_a_rank() -> None:
    stages = {_stage(_module(f)) for f in ROOT.rglob("*.py")}
    assert stages <= set(RANKS), f"add to RANKS: {sorted(stages - set(RANKS))}"


def test_no_stage_imports_a_later_one() -> None:
    assert upward() - ALLOWED_UPWARD == set()
    assert upward() >= ALLOWED_UPWARD, "an allowed import that is gone: remove it from ALLOWED_UPWARD"


def test_no_import_cycle_between_stages_at_run_time() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports(type_checking=False).items():
        if not any(module == m for m, _ in ALLOWED_UPWARD):
            graph[_stage(module)] |= {_stage(t) for t in targets} - {_stage(module)}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph[start])

    assert [stage for stage in list(graph) if reaches(stage, stage, {stage})] == []
