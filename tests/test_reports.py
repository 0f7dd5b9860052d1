"""Compliance reports from a real sweep of the demo estate, in every format, looked at as a person would."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from openpyxl import load_workbook

from sentinel.cli.main import main
from tests.netns import require


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--workdir", str(work)]) == 0
    return work


def report(demo_store: Path, out: Path, fmt: str, *extra: str) -> Path:
    path = out / f"report.{fmt}"
    args = [
        "report",
        "compliance",
        "--store",
        str(demo_store / "sentinel.db"),
        "--registry",
        str(demo_store / "registry.yaml"),
        "--format",
        fmt,
        "-o",
        str(path),
        *extra,
    ]
    assert main(args) == 0
    return path


def test_json_has_verdicts_problems_and_ratios(demo_store: Path, tmp_path: Path) -> None:
    data = json.loads(report(demo_store, tmp_path, "json").read_text())
    verdicts = data["summary"]["verdicts"]
    assert verdicts["non_compliant"] > 0 and verdicts["not_assessed"] > 0
    assert "compliant" not in verdicts  # a remote monitor never claims compliance
    expired = [p for p in data["problems"] if p["title"] == "TLS certificate has expired"]
    assert expired and expired[0]["risk"] == "high" and data["problems"][0]["number"] == "T001"
    assert [p["risk"] for p in data["problems"]] == sorted(
        (p["risk"] for p in data["problems"]), key=["high", "medium", "low"].index
    )
    portal = [r for r in data["records"] if r["system_id"] == "city-portal" and r["control"] == "8.1.2.2 b)"]
    assert portal and portal[0]["verdict"] == "non_compliant" and "expired" in portal[0]["observed"]
    assert {d["name"] for d in data["summary"]["by_department"]} >= {"市大数据管理中心", "区政务服务中心"}


def test_scope_filters(demo_store: Path, tmp_path: Path) -> None:
    data = json.loads(report(demo_store, tmp_path, "json", "--department", "区政务服务中心").read_text())
    assert {s["id"] for s in data["systems"]} == {"district-portal"}
    assert {r["system_id"] for r in data["records"]} == {"district-portal"}
    data = json.loads(report(demo_store, tmp_path, "json", "--level", "3", "--tier", "city").read_text())
    assert {s["id"] for s in data["systems"]} == {"city-portal", "city-open-data"}


def test_csv_xlsx_and_oscal(demo_store: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader(report(demo_store, tmp_path, "csv").read_text(encoding="utf-8-sig").splitlines()))
    assert rows and {"system_id", "control", "verdict"} <= rows[0].keys()
    book = load_workbook(report(demo_store, tmp_path, "xlsx", "--lang", "en"))
    assert book.sheetnames[0] == "summary" and "市大数据管理中心" in book.sheetnames
    sheet = book["市大数据管理中心"]
    assert sheet.auto_filter.ref and sheet.max_row > 1 and sheet["A1"].value == "System"
    oscal = json.loads(report(demo_store, tmp_path, "oscal").read_text())["assessment-results"]
    result = oscal["results"][0]
    assert result["findings"] and all(f["target"]["status"]["state"] == "not-satisfied" for f in result["findings"])
    assert {o["methods"][0] for o in result["observations"]} == {"TEST"}
    assert (tmp_path / "report.catalog.json").exists()


def test_manifest_detects_edits(demo_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = report(demo_store, tmp_path, "html")
    manifest = path.with_name(path.name + ".manifest.json")
    assert main(["report", "verify", str(manifest)]) == 0
    path.write_text(path.read_text().replace("不符合", "符合"))
    assert main(["report", "verify", str(manifest)]) == 1
    assert "does not match" in capsys.readouterr().err


def test_pdf_and_html_render_chinese(demo_store: Path, tmp_path: Path) -> None:
    require(shutil.which("chromium") is not None, "needs Debian's chromium (installed by .ci/setup)")
    require(
        shutil.which("pdftotext") is not None and shutil.which("pdftoppm") is not None,
        "needs poppler-utils (installed by .ci/setup)",
    )
    pdf = report(demo_store, tmp_path, "pdf", "--level", "3")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for expected in (
        "网络安全等级保护远程监测报告",
        "安全问题汇总",
        "不符合",
        "市政务服务门户",
        "TLS certificate",
    ):
        assert expected in text, expected
    shots = Path(__file__).resolve().parent.parent / "bench" / "out"
    shots.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["pdftoppm", "-r", "50", "-f", "1", "-l", "2", "-png", str(pdf), str(shots / "report-pdf")],
        check=True,
        timeout=60,
    )
    assert (shots / "report-pdf-1.png").exists() or (shots / "report-pdf-01.png").exists()

    from playwright.sync_api import sync_playwright

    html = report(demo_store, tmp_path, "html", "--lang", "en")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(html.as_uri())
            body = page.inner_text("body")
            assert "MLPS 2.0 remote monitoring report" in body and "non-compliant" in body and "市政务服务门户" in body
            page.screenshot(path=str(shots / "report-html.png"))
        finally:
            browser.close()
