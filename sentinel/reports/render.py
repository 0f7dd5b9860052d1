"""Write a ReportData as HTML, PDF (headless Chromium), XLSX, CSV, JSON or OSCAL assessment-results."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import jinja2

from sentinel.errors import SentinelError
from sentinel.reports.labels import LABELS
from sentinel.reports.model import VERDICTS, ControlRecord, ReportData
from sentinel.reports.oscal import assessment_results

FORMATS = ("html", "pdf", "xlsx", "csv", "json", "oscal")


class ReportError(SentinelError):
    """A report cannot be written (a missing tool, an unwritable path)."""


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def render_html(report: ReportData) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    by_system: dict[str, list[ControlRecord]] = defaultdict(list)
    for r in report.records:
        by_system[r.system_id].append(r)
    return env.get_template("compliance.html").render(
        report=report,
        t=LABELS[report.lang],
        lang=report.lang,
        verdicts=VERDICTS,
        pct=_pct,
        records_by_system=list(by_system.items()),
    )


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise ReportError("PDF output needs headless Chromium: apt-get install chromium fonts-noto-cjk")


def render_pdf(report: ReportData, output: Path) -> None:
    """Print the HTML report with headless Chromium, which embeds the CJK fonts it renders with."""
    binary = chromium_binary()
    with tempfile.TemporaryDirectory(prefix="sentinel-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(render_html(report), encoding="utf-8")
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp}/profile",
            "--no-pdf-header-footer",
            f"--print-to-pdf={output}",
            page.as_uri(),
        ]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            raise ReportError("Chromium did not finish printing the PDF within 120 s") from None
        if result.returncode != 0 or not output.exists() or output.stat().st_size == 0:
            raise ReportError(f"Chromium failed to print the PDF: {result.stderr.strip()[-400:]}")


CSV_COLUMNS = (
    "system_id",
    "system_name",
    "department",
    "tier",
    "mlps_level",
    "framework",
    "control",
    "title",
    "layer",
    "targets",
    "observed",
    "observed_at",
    "method",
    "verdict",
    "risk",
)


def render_csv(report: ReportData) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in report.records:
        writer.writerow(
            [
                r.system_id,
                r.system_name,
                r.department,
                r.tier,
                r.mlps_level,
                r.framework,
                r.control,
                r.title,
                r.layer,
                ";".join(r.targets),
                r.observed,
                r.observed_at or "",
                r.method,
                r.verdict,
                r.risk or "",
            ]
        )
    return buf.getvalue()


def render_xlsx(report: ReportData, output: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    t = LABELS[report.lang]
    wb = Workbook()
    summary = wb.active
    assert summary is not None
    summary.title = "summary" if report.lang == "en" else "总体情况"
    header = [t["department"], t["systems"], t["assessed"], *(t[v] for v in VERDICTS), t["ratio"]]
    summary.append([report.title])
    summary.append([t["cover_date"], report.generated_at])
    summary.append([])
    summary.append(header)
    first = summary.max_row
    for row in report.by_department:
        summary.append(
            [
                row.name,
                row.systems,
                row.assessed,
                *(row.counts[v] for v in VERDICTS),
                round(row.ratio, 4) if row.ratio is not None else None,
            ]
        )
    summary.auto_filter.ref = f"A{first}:{get_column_letter(len(header))}{summary.max_row}"
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="E8ECF2")
    for cell in summary[first]:
        cell.font, cell.fill = bold, fill
    columns = [
        t["system"],
        t["layer"],
        t["control"],
        t["clause"],
        t["target"],
        t["observed"],
        t["when"],
        t["verdict"],
        t["risk"],
    ]
    by_dept: dict[str, list[ControlRecord]] = defaultdict(list)
    for r in report.records:
        by_dept[r.department].append(r)
    for dept, rows in sorted(by_dept.items()):
        sheet = wb.create_sheet(_sheet_name(dept, wb.sheetnames))
        sheet.append(columns)
        for r in rows:
            sheet.append(
                [
                    f"{r.system_name} ({r.system_id})",
                    r.layer,
                    r.control,
                    r.title,
                    ", ".join(r.targets),
                    r.observed,
                    r.observed_at,
                    t[r.verdict],
                    t[r.risk] if r.risk else "",
                ]
            )
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{sheet.max_row}"
        sheet.freeze_panes = "A2"
        for cell in sheet[1]:
            cell.font, cell.fill = bold, fill
        for i, width in enumerate((28, 14, 12, 36, 30, 40, 22, 16, 8), start=1):
            sheet.column_dimensions[get_column_letter(i)].width = width
    wb.save(output)


def _sheet_name(name: str, taken: list[str]) -> str:
    clean = "".join(c for c in name if c not in "[]:*?/\\")[:28] or "sheet"
    candidate, n = clean, 2
    while candidate in taken:
        candidate, n = f"{clean[:25]}~{n}", n + 1
    return candidate


def write_report(report: ReportData, fmt: str, output: Path) -> None:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "html":
            output.write_text(render_html(report), encoding="utf-8")
        elif fmt == "pdf":
            render_pdf(report, output)
        elif fmt == "xlsx":
            render_xlsx(report, output)
        elif fmt == "csv":
            output.write_text(render_csv(report), encoding="utf-8-sig")  # BOM: Excel opens Chinese CSV right
        elif fmt == "json":
            output.write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
        elif fmt == "oscal":
            output.write_text(json.dumps(assessment_results(report), ensure_ascii=False, indent=2), encoding="utf-8")
        else:
            raise ReportError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    except OSError as exc:
        raise ReportError(f"{output}: cannot write the report: {exc.strerror or exc}") from None
