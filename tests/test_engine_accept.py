"""The rule engine is an earlier stage than findings: it imports no later stage, `engine.accept` included
(an operator's accepted baseline says "nothing to accept" in engine terms; the tracker turns that into the
lifecycle's refusal, tested in tests/test_findings_tracker.py)."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

import sentinel.engine
from sentinel.engine.accept import NoBaselineError, accept_baseline
from sentinel.errors import SentinelError
from sentinel.findings.lifecycle import InvalidTransitionError
from sentinel.models import Finding, FindingStatus, Severity
from sentinel.store import SqliteStore

ENGINE = Path(sentinel.engine.__file__).parent
#: stages after the engine (architecture.md), and the front ends and composition root above them all
LATER = ("findings", "sinks", "exporter", "web", "notify", "compliance", "reports", "runtime", "ruledev", "cli", "app")


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, type-only and function-local imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_engine_module_imports_a_later_stage() -> None:
    upward = {
        f"{path.relative_to(ENGINE.parent.parent)} imports {module}"
        for path in sorted(ENGINE.rglob("*.py"))
        for module in _imports(path)
        if any(module == f"sentinel.{stage}" or module.startswith(f"sentinel.{stage}.") for stage in LATER)
    }
    assert not upward, sorted(upward)


def test_no_baseline_is_an_engine_error_not_a_lifecycle_one(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    now = datetime.now(UTC)
    finding = Finding(
        id="f1",
        rule_id="http_redirects_to_https",
        title="t",
        severity=Severity.MEDIUM,
        category="c",
        system_id="sys",
        target="http://www.example.cn/",
        status=FindingStatus.OPEN,
        occurrences=1,
        first_seen=now,
        last_seen=now,
    )
    try:
        with pytest.raises(NoBaselineError, match=r"keeps no baseline for http://www\.example\.cn/") as err:
            accept_baseline(store, finding, now)
        assert isinstance(err.value, SentinelError) and not isinstance(err.value, InvalidTransitionError)
    finally:
        store.close()
