"""Rule regexes (`op: matches`) cannot stall a sweep: linear-time engine, bounded subject, refused patterns located."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sentinel.engine import regex
from sentinel.engine.conditions import Condition, compile_condition
from sentinel.engine.loader import load_rules
from sentinel.errors import InputError
from sentinel.ruledev.lint import lint

RULE = """\
id: banner_redos
title: A banner that a catastrophic regex reads
severity: low
category: configuration
observation: banner
condition:
  field: banner
  op: matches
  value: {pattern}
remediation: Nothing to do.
"""

BANNER = "a" * 40 + "!"  # 41 bytes: `(a+)+$` backtracks 2**40 times on `re`


def _write_rule(folder: Path, pattern: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "banner_redos.yaml"
    path.write_text(RULE.format(pattern=f"'{pattern}'"), encoding="utf-8")
    return path


def test_catastrophic_pattern_against_a_41_byte_banner_is_fast(tmp_path: Path) -> None:
    """In a child process, so the old engine (which needs minutes) fails on the timeout instead of hanging."""
    _write_rule(tmp_path / "rules", "(a+)+$")
    script = textwrap.dedent(
        f"""
        import time
        from datetime import UTC, datetime
        from pathlib import Path
        from sentinel.engine.loader import load_rules
        from sentinel.errors import InputError
        from sentinel.models import Observation
        try:
            rule, = load_rules([Path({str(tmp_path / "rules")!r})])
        except InputError as exc:  # without google-re2 the pattern is refused instead
            print("refused", exc)
            raise SystemExit(0)
        obs = Observation(kind="banner", system_id="s", target="t:21/tcp", observed_at=datetime.now(UTC),
                          probe="banners", data={{"banner": {BANNER!r}}})
        start = time.perf_counter()
        verdict = rule.evaluate(obs)
        print(verdict, time.perf_counter() - start)
        """
    )
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("evaluating (a+)+$ against a 41-byte banner took more than 5 s")
    assert done.returncode == 0, done.stderr
    if regex.engine() == "re2":
        verdict, seconds = done.stdout.split()
        assert verdict == "False" and float(seconds) < 1.0
    else:
        assert done.stdout.startswith(f"refused {tmp_path / 'rules' / 'banner_redos.yaml'}:9: "), done.stdout
    assert time.monotonic() - started < 5
    assert done.stderr == ""  # RE2 logs nothing on stderr


def test_re2_is_the_engine_when_installed() -> None:
    pytest.importorskip("re2")
    assert regex.engine() == "re2"


@pytest.mark.parametrize("use", ["re2", "re"])
def test_the_subject_is_bounded(use: str) -> None:
    if use == "re2":
        pytest.importorskip("re2")
    search = regex.compile_rule_regex("b", use)
    assert search("a" * 10 + "b")
    assert not search("a" * regex.MAX_SUBJECT_CHARS + "b")  # past the bound: not read


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [(r"(a)\1", "backreference"), (r"(?<=a)b", "lookaround"), ("x" * (regex.MAX_PATTERN_CHARS + 1), "longer than")],
)
def test_unsafe_or_unsupported_patterns_are_refused_by_re2(pattern: str, reason: str) -> None:
    pytest.importorskip("re2")
    with pytest.raises(ValueError, match=reason):
        Condition.model_validate({"field": "banner", "op": "matches", "value": pattern})


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("(a+)+$", "quantifier inside a quantified group"), ("(a|aa)*b", "alternation"), (r"(a)\1", "backreference")],
)
def test_without_re2_risky_patterns_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        regex.compile_rule_regex(pattern, "re")


@pytest.mark.parametrize("pattern", [r"^nginx/1\.", r"(?i)openssh[_-]([0-9.]+)", r"^SSH-2\.0-\S+ \S+$", "a{2,5}b*"])
@pytest.mark.parametrize("use", ["re2", "re"])
def test_ordinary_patterns_keep_working(pattern: str, use: str) -> None:
    if use == "re2":
        pytest.importorskip("re2")
    regex.compile_rule_regex(pattern, use)
    compiled = compile_condition(Condition.model_validate({"field": "x", "op": "matches", "value": pattern}))
    assert compiled({"x": "nope"}.get) in (True, False)
    assert compiled({}.get) is None  # a missing field is unknown, as before


def _force_re(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regex, "_re2", None)
    assert regex.engine() == "re"


@pytest.mark.parametrize("engine", ["re2", "re"])
def test_refused_pattern_is_located_at_load_and_in_lint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    if engine == "re2":
        pytest.importorskip("re2")
        pattern = r"(b)\1"
    else:
        _force_re(monkeypatch)
        pattern = "(a+)+$"
    path = _write_rule(tmp_path / "rules", pattern)
    with pytest.raises(InputError) as caught:
        load_rules([tmp_path / "rules"])
    (problem,) = caught.value.problems
    assert problem.file == str(path) and problem.line == 9 and "regular expression" in problem.message
    found = [p for p in lint([tmp_path / "rules"]).problems if "regular expression" in p.message]
    assert [(p.file, p.line) for p in found] == [(str(path), 9)]
