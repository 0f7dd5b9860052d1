"""Compliance reports from a real sweep of the demo estate, in every format, looked at as a person would."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from openpyxl import load_workbook

from sentinel.cli.main import main
from sentinel.compliance import natural_key
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
    expired = [p for p in data["problems"] if p["title"] == "TLS 证书已过期"]
    assert expired and expired[0]["risk"] == "high" and data["problems"][0]["number"] == "T001"
    assert [p["risk"] for p in data["problems"]] == sorted(
        (p["risk"] for p in data["problems"]), key=["high", "medium", "low"].index
    )
    portal = [r for r in data["records"] if r["system_id"] == "city-portal" and r["control"] == "8.1.2.2 b)"]
    assert portal and portal[0]["verdict"] == "non_compliant" and "证书已过期" in portal[0]["observed"]
    assert {d["name"] for d in data["summary"]["by_department"]} >= {"市大数据管理中心", "区政务服务中心"}


def test_scope_filters(demo_store: Path, tmp_path: Path) -> None:
    data = json.loads(report(demo_store, tmp_path, "json", "--department", "区政务服务中心").read_text())
    assert {s["id"] for s in data["systems"]} == {"district-portal"}
    assert {r["system_id"] for r in data["records"]} == {"district-portal"}
    data = json.loads(report(demo_store, tmp_path, "json", "--level", "3", "--tier", "city").read_text())
    assert {s["id"] for s in data["systems"]} == {"city-portal", "city-open-data"}


def test_csv_xlsx_and_oscal(demo_store: Path, tmp_path: Path) -> None:
    # English CSV keeps the machine column names for scripts; the Chinese one has Chinese headers (see below)
    en_csv = report(demo_store, tmp_path, "csv", "--lang", "en")
    rows = list(csv.DictReader(en_csv.read_text(encoding="utf-8-sig").splitlines()))
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
        "TLS 证书已过期",
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


def pdf_pages(pdf: Path) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")
    return pages[:-1] if not pages[-1].strip() else pages


def test_problems_are_grouped_per_rule_in_natural_order(demo_store: Path, tmp_path: Path) -> None:
    data = json.loads(report(demo_store, tmp_path, "json").read_text())
    rules = [p["rule_id"] for p in data["problems"]]
    assert len(rules) == len(set(rules))  # one problem, one remediation per rule
    shared = [p for p in data["problems"] if p["systems"] > 1]
    assert shared and all(len({a["system_id"] for a in p["affected"]}) == p["systems"] for p in shared)
    assert [p["number"] for p in data["problems"]] == [f"T{i:03d}" for i in range(1, len(rules) + 1)]
    assert all("`" not in p["remediation"] for p in data["problems"])
    for system in {r["system_id"] for r in data["records"]}:
        for fw in {r["framework"] for r in data["records"]}:
            got = [r["control"] for r in data["records"] if r["system_id"] == system and r["framework"] == fw]
            assert got == sorted(got, key=natural_key)
    # level by level: a level-2 system has mlps2-l2 records only, never an mlps2-l3 not_applicable row
    levels = {(r["mlps_level"], r["framework"]) for r in data["records"] if r["framework"].startswith("mlps")}
    assert levels <= {(2, "mlps2-l2"), (3, "mlps2-l3"), (4, "mlps2-l4")} and (2, "mlps2-l2") in levels


def test_csv_and_xlsx_honour_the_language(demo_store: Path, tmp_path: Path) -> None:
    zh = report(demo_store, tmp_path, "csv").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(zh.splitlines()))
    assert {"系统编号", "测评项", "符合情况"} <= rows[0].keys()
    assert {r["符合情况"] for r in rows} <= {"不符合", "部分符合", "远程未发现问题", "未评估", "不适用"}
    assert "non_compliant" not in zh and "`" not in zh
    assert "TLS 证书已过期" in zh and "TLS certificate has expired" not in zh  # rule titles in Chinese too
    en = list(csv.DictReader(report(demo_store, tmp_path, "csv", "--lang", "en").read_text("utf-8-sig").splitlines()))
    assert {r["verdict"] for r in en} >= {"non-compliant"} and "符合情况" not in en[0]
    book = load_workbook(report(demo_store, tmp_path, "xlsx"))
    assert book.sheetnames[:2] == ["总体情况", "安全问题"]
    sheet = book["市大数据管理中心"]
    assert sheet["A1"].value == "系统" and sheet.auto_filter.ref
    values = {c.value for row in sheet.iter_rows(min_row=2) for c in row}
    assert "不符合" in values and "non_compliant" not in values
    problems = book["安全问题"]
    assert all("`" not in str(c.value) for row in problems.iter_rows() for c in row if c.value)
    cells = {str(c.value) for row in problems.iter_rows() for c in row if c.value}
    expired = next(r for r in problems.iter_rows(values_only=True) if "TLS 证书已过期" in r)
    assert any(str(v).startswith("向签发 CA") for v in expired)  # the Chinese remediation next to it
    assert not any("TLS certificate" in c or c.startswith("Renew") for c in cells)


def test_oscal_validates_with_trestle(demo_store: Path, tmp_path: Path) -> None:
    from trestle.oscal.assessment_results import AssessmentResults

    doc = json.loads(report(demo_store, tmp_path, "oscal").read_text())
    model = AssessmentResults.model_validate(doc["assessment-results"])  # raises on any schema violation
    result = model.results[0]
    assert result.local_definitions is not None and result.local_definitions.components
    assert result.findings and all(f.target.status.state.value == "not-satisfied" for f in result.findings)


def test_split_department_writes_one_file_per_department(demo_store: Path, tmp_path: Path) -> None:
    report(demo_store, tmp_path, "json", "--split", "department")
    files = sorted(f for f in tmp_path.glob("report-*.json") if not f.name.endswith(".manifest.json"))
    registry = yaml.safe_load((demo_store / "registry.yaml").read_text())
    departments = {s["owner"]["department"] for s in registry["systems"]}
    assert len(files) == len(departments) and not (tmp_path / "report.json").exists()
    for f in files:
        data = json.loads(f.read_text())
        (dept,) = {s["department"] for s in data["systems"]}
        assert f.name == f"report-{dept}.json" and f.with_name(f.name + ".manifest.json").exists()


def test_pdf_is_signable_cover_page_numbers_and_toc(demo_store: Path, tmp_path: Path) -> None:
    require(shutil.which("chromium") is not None, "needs Debian's chromium (installed by .ci/setup)")
    require(shutil.which("pdftotext") is not None, "needs poppler-utils (installed by .ci/setup)")
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    since = until - timedelta(days=3)
    extra = ("--org", "某市大数据管理局", "--report-number", "R-2026-0013")
    extra += ("--since", since.isoformat(), "--until", until.isoformat())
    pages = pdf_pages(report(demo_store, tmp_path, "pdf", *extra))
    total = len(pages)
    for n, page in enumerate(pages, start=1):
        assert f"第{n}页共{total}页" in "".join(page.split()), n
    cover = pages[0]
    beijing = ZoneInfo("Asia/Shanghai")
    start, end = (t.astimezone(beijing).strftime("%Y-%m-%d %H:%M") for t in (since, until))
    for expected in ("某市大数据管理局", "R-2026-0013", start, end, "编制人", "审核人", "批准人", "单位盖章"):
        assert expected in cover, expected
    assert since.isoformat() not in cover and "+00:00" not in cover  # Beijing time, not a raw UTC stamp
    assert "TLS 证书已过期" in "".join(pages)  # the period holds the demo's findings (in Chinese: a zh report)
    toc = pages[1]
    assert "目录" in toc
    # every TOC entry names the page its section starts on
    for line in toc.splitlines():
        m = re.match(r"\s*(\S.*?)\s{2,}(\d+)\s*$", line)
        if not m:
            continue
        heading, number = " ".join(m.group(1).split()), int(m.group(2))
        assert any(" ".join(x.split()) == heading for x in pages[number - 1].splitlines()), (heading, number)
    body = "\n".join(pages)
    assert "`" not in body and "non_compliant" not in body and "mlps:" not in body
    en = pdf_pages(report(demo_store, tmp_path, "pdf", "--lang", "en", *extra))
    assert all(f"Page {n} of {len(en)}" in " ".join(p.split()) for n, p in enumerate(en, start=1))
    assert "Contents" in en[1] and "Organisation" in en[0]
    assert "TLS certificate has expired" in "".join(en) and "TLS 证书已过期" not in "".join(en)


def test_estate_report_stays_usable(tmp_path: Path) -> None:
    from bench.report_estate import build_estate

    registry, db = build_estate(tmp_path / "estate", systems=1354, findings=30000)
    base = ["report", "compliance", "--registry", str(registry), "--store", str(db), "--until", "2026-11-20T16:00"]
    html = tmp_path / "estate.html"
    assert main([*base, "--format", "html", "-o", str(html)]) == 0
    text = html.read_text()
    assert len(text.encode()) < 5_000_000, len(text.encode())  # was 58 MB
    assert text.count('class="problem"') == len(json_problems(base, tmp_path))
    assert "--split department" in text  # the estate report says where the per-system records are
    assert text.count('<h3 id="d-') == 40


def json_problems(base: list[str], tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / "estate.json"
    assert main([*base, "--format", "json", "-o", str(out)]) == 0
    problems: list[dict[str, object]] = json.loads(out.read_text())["problems"]
    return problems
