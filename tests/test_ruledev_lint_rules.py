"""ruledev/lint.py on rule trees: every problem located at FILE:LINE, a precondition buried in `all:`, and the
Chinese title and remediation every shipped rule carries (issue 13), plain Chinese without Markdown."""

from __future__ import annotations

from pathlib import Path

from sentinel.paths import shipped_rules_dir
from sentinel.ruledev.lint import ZH_PENDING, lint
from tests.support.engine_lab import shipped_rules
from tests.support.rule_tree import FIXTURE, RULE, Write, tree

SHIPPED = shipped_rules()


def test_lint_reports_every_problem_with_file_and_line(write_file: Write) -> None:
    root = tree(write_file, control="9.9.9 z)", second="present")
    write_file("rules/ports/port_other.yaml", RULE.format(id="port_thing", control="8.1.4.4 b)"))
    write_file(
        "rules/ports/no_fixture.yaml", RULE.format(id="no_fixture", control="8.1.4.4 b)").replace("medium", "huge")
    )
    write_file("rules/tests/ghost_rule.yaml", FIXTURE.format(id="ghost_rule", second="absent"))
    text = "\n".join(str(p) for p in lint([root]).problems)
    assert "port_thing.yaml:8: controls.mlps: '9.9.9 z)' is not a control" in text
    assert "port_other.yaml:1: rule id 'port_thing' must equal the file name" in text
    assert "duplicate rule id 'port_thing'" in text
    assert "no_fixture.yaml:3: severity" in text
    assert "tests/port_thing.yaml:1: fixture needs at least one 'absent' case" in text
    assert "ghost_rule.yaml:1: fixture for unknown rule 'ghost_rule'" in text


def test_lint_flags_a_precondition_buried_in_all(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    (folder / "tests").mkdir(parents=True)
    (folder / "site_buried.yaml").write_text(
        "id: site_buried\ntitle: Buried precondition\nseverity: low\ncategory: configuration\nobservation: http\n"
        "condition:\n  all:\n    - {field: reachable, op: eq, value: true}\n    - {field: x, op: eq, value: false}\n"
        "remediation: Fix it.\n",
        encoding="utf-8",
    )
    (folder / "tests" / "site_buried.yaml").write_text(
        "rule: site_buried\ncases:\n"
        "  - {name: p, expect: present, observation: {target: t, data: {reachable: true, x: false}}}\n"
        "  - {name: a, expect: absent, observation: {target: t, data: {reachable: true, x: true}}}\n",
        encoding="utf-8",
    )
    report = lint([folder], frameworks=[])
    messages = [(p.line, p.message) for p in report.problems]
    assert any(line == 8 and "'reachable eq True' is a precondition" in m and "when:" in m for line, m in messages), (
        messages
    )


def test_every_shipped_rule_has_chinese_text_enforced_by_lint() -> None:
    report = lint([shipped_rules_dir()])
    assert not [p for p in report.problems if "_zh" in p.message], report.problems
    missing = sorted(r.id for r in SHIPPED.values() if not (r.title_zh and r.remediation_zh))
    # Only the rules listed as pending may still lack it (today: the traffic rules, written by their owner) ...
    assert set(missing) <= ZH_PENDING, set(missing) - ZH_PENDING
    assert {r for r in SHIPPED if not r.startswith("traffic_")} & set(missing) == set()
    # ... and the list shrinks as they get it: a listed rule that has its text must leave the list.
    assert set(SHIPPED) >= ZH_PENDING and sorted(ZH_PENDING) == missing, sorted(ZH_PENDING - set(missing))
    assert {Path(w.file).stem for w in report.warnings} == ZH_PENDING


def test_shipped_chinese_text_is_plain_chinese() -> None:
    for rule in SHIPPED.values():
        for text in (rule.title_zh, rule.remediation_zh):
            if text:
                assert "`" not in text and "**" not in text and "  " not in text, rule.id
    # the folded YAML blocks wrap Chinese lines without leaving a space where they were joined
    assert SHIPPED["tls_weak_suites_rejected"].remediation_zh.endswith("都排除 !aNULL:!eNULL:!EXPORT:!RC4:!3DES。")
    assert "nginx 配置 ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;" in SHIPPED["tls_weak_suites_rejected"].remediation_zh


def test_lint_requires_chinese_text_of_shipped_rules_and_warns_about_others(write_file: Write) -> None:
    root = tree(write_file)  # a third-party rule tree: no Chinese text
    report = lint([root])
    assert not report.problems
    assert [w.message.split(":")[0] for w in report.warnings] == ["title_zh", "remediation_zh"]
    assert report.warnings[0].line == 2 and report.warnings[1].line == 9  # at the English text's line
    strict = lint([root], require_zh=True)
    assert [p.message.split(":")[0] for p in strict.problems] == ["title_zh", "remediation_zh"]

    bad = RULE.format(id="port_thing", control="8.1.4.4 b)") + "title_zh: Something open\n"
    bad += "remediation_zh: 关闭 `nginx` 端口。\n"
    write_file("rules/ports/port_thing.yaml", bad)
    text = "\n".join(str(p) for p in lint([root]).problems)
    assert "port_thing.yaml:10: title_zh: is not Chinese text" in text
    assert "port_thing.yaml:11: remediation_zh: no Markdown markup" in text

    good = (
        RULE.format(id="port_thing", control="8.1.4.4 b)")
        + "title_zh: 端口开放\nremediation_zh: >\n  关闭端口，\n  或限制访问。\n"
    )
    write_file("rules/ports/port_thing.yaml", good)
    write_file("rules/tests/port_thing.yaml", FIXTURE.format(id="port_thing", second="absent"))
    clean = lint([root], require_zh=True)
    assert not clean.problems and not clean.warnings
    assert clean.rules[0].remediation_zh == "关闭端口，或限制访问。"
