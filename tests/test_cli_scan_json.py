"""`sentinel scan --format json` writes its findings one at a time (`scan_cmd.write_json`), in exactly the bytes the
whole-list `render_findings` printed: Chinese text, nested evidence, empty lists and no findings at all."""

from __future__ import annotations

from dataclasses import replace

import click
from click.testing import CliRunner

from sentinel.cli.common import render_findings
from sentinel.cli.scan_cmd import write_json
from sentinel.models import Finding
from tests.support.findings import make_finding


def output(findings: list[Finding], streamed: bool) -> str:
    @click.command()
    def show() -> None:
        if streamed:
            write_json(findings)
        else:
            render_findings(findings, "json")

    result = CliRunner().invoke(show, [])
    assert result.exit_code == 0, result.output
    return result.output


def test_streamed_json_is_byte_for_byte_the_list_render_findings_prints() -> None:
    findings = [make_finding(i) for i in range(5)]
    findings[1] = replace(findings[1], title="证书已过期", remediation="更换证书。\n第二行", controls=[])
    findings[2] = replace(findings[2], evidence={"nested": {"list": [1, {"deep": "x\ty"}], "empty": {}}, "none": None})
    for shown in (findings, findings[:1], []):
        assert output(shown, streamed=True) == output(shown, streamed=False)
