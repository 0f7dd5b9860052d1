"""Rule regular expressions (`op: matches`), compiled so that no pattern and no observed text can stall a sweep.

A rule's pattern meets text that a target chose (banners, headers, page titles), so Python's backtracking `re`
is not safe here: `(a+)+$` against 40 `a`s and a `!` takes minutes. Rule regexes therefore run on RE2
(`google-re2`), whose matching time is linear in the text and whose memory is bounded (`MAX_PROGRAM_BYTES`).
RE2 has no backreferences, lookaround or possessive quantifiers; a pattern that uses them is refused when the
rule is loaded (and by `sentinel rules lint`), with the rule file and line. Where RE2 differs from `re`: `$`
is the end of the text (Python's also matches before a final newline), and the digit, word and word-boundary
classes are ASCII only.

Where `google-re2` is not installed, rule regexes fall back to `re` with the constructs that make backtracking
blow up refused up front: a quantifier over something that itself holds a quantifier or an alternation
(`(a+)+`, `(a|aa)*`), and backreferences.

Either way a match reads at most `MAX_SUBJECT_CHARS` of a field.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

#: a `matches` condition reads at most this much of a field (a page body can be megabytes)
MAX_SUBJECT_CHARS = 64 * 1024
#: the memory RE2 may use for one compiled pattern (its DFA cache included)
MAX_PROGRAM_BYTES = 8 << 20
#: patterns longer than this are refused (a rule regex is a line, not a document)
MAX_PATTERN_CHARS = 4096

Search = Callable[[str], bool]

_re2: Any
try:  # untyped, and optional until it is a declared dependency: imported by name
    _re2 = importlib.import_module("re2")
except ImportError:  # pragma: no cover - the `re` fallback is exercised through `use="re"` in the tests
    _re2 = None


def engine() -> str:
    """Which engine rule regexes run on: `re2` or, without google-re2, `re` with risky constructs refused."""
    return "re2" if _re2 is not None else "re"


def compile_rule_regex(pattern: str, use: str | None = None) -> Search:
    """A search function for `pattern`, or ValueError saying why the pattern is refused (no traceback, no hang).

    `use`: force an engine (`re2` or `re`); by default RE2 when installed."""
    chosen = use or engine()
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"regular expression is longer than {MAX_PATTERN_CHARS} characters")
    if chosen == "re2":
        return _compile_re2(pattern)
    return _compile_re(pattern)


def _compile_re2(pattern: str) -> Search:
    if _re2 is None:
        raise ValueError("the RE2 engine (google-re2) is not installed")
    options = _re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    options.max_mem = MAX_PROGRAM_BYTES
    try:
        compiled: Any = _re2.compile(pattern, options)
    except _re2.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r} (RE2 syntax): {_re2_reason(exc)}") from None
    search = compiled.search

    def matches(text: str) -> bool:
        return search(text[:MAX_SUBJECT_CHARS]) is not None

    return matches


def _re2_reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    text = str(reason)
    if re.search(r"invalid escape sequence: \\\d|\(\?P=", text):
        return text + " (RE2 has no backreferences)"
    if re.search(r"invalid perl operator: \(\?(<?[=!])", text):
        return text + " (RE2 has no lookaround)"
    return text


def _compile_re(pattern: str) -> Search:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    except (RecursionError, OverflowError):
        raise ValueError(f"regular expression {pattern!r} is too complex") from None
    risk = _backtracking_risk(pattern)
    if risk is not None:
        raise ValueError(f"regular expression {pattern!r} is refused: {risk} can take exponential time")
    search = compiled.search

    def matches(text: str) -> bool:
        return search(text[:MAX_SUBJECT_CHARS]) is not None

    return matches


def _backtracking_risk(pattern: str) -> str | None:
    """The first construct of `pattern` that can make a backtracking engine explode, if any."""
    from re import _parser  # type: ignore[attr-defined]  # the stdlib parser (sre_parse)

    try:
        tree = _parser.parse(pattern)
    except Exception:  # compile() accepted it, so this is unexpected: refuse rather than guess
        return "a pattern that cannot be analysed"
    return _walk(tree, inside_repeat=False)


_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


def _walk(items: Any, inside_repeat: bool) -> str | None:
    for op, arg in items:
        name = str(op)
        if name in ("GROUPREF", "GROUPREF_EXISTS"):
            return "a backreference"
        if name in _REPEATS:
            _low, high, body = arg
            repeats = high > 1
            if repeats and inside_repeat:
                return "a quantifier inside a quantified group"
            found = _walk(body, inside_repeat or repeats)
            if found is not None:
                return found
        elif name == "BRANCH":
            if inside_repeat:
                return "an alternation inside a quantified group"
            for branch in arg[1]:
                found = _walk(branch, inside_repeat)
                if found is not None:
                    return found
        elif name == "SUBPATTERN":
            found = _walk(arg[-1], inside_repeat)
            if found is not None:
                return found
        elif name in ("ASSERT", "ASSERT_NOT"):
            found = _walk(arg[1], inside_repeat)
            if found is not None:
                return found
        elif name == "ATOMIC_GROUP":
            found = _walk(arg, inside_repeat)
            if found is not None:
                return found
    return None
