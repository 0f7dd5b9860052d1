"""Write a ReportData as HTML, PDF (headless Chromium), XLSX, CSV, JSON or OSCAL assessment-results."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2

from sentinel.reports.labels import LABELS
from sentinel.reports.model import VERDICTS, ControlRecord, ReportData
from sentinel.reports.oscal import assessment_results
from sentinel.reports.pdf import Chromium, ReportError, chromium_binary, render_pdf_file
from sentinel.reports.text import local_time, plain

FORMATS = ("html", "pdf", "xlsx", "csv", "json", "oscal")
__all__ = ["FORMATS", "ReportError", "chromium_binary", "render_html", "write_report"]

_PREFIX = {"mlps": "", "gov_web": "", "nist_800_53": "NIST ", "cis_v8": "CIS "}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def control_label(ref: str) -> str:
    """'mlps:8.1.4.4 b)' → '8.1.4.4 b)'; 'nist_800_53:SC-8' → 'NIST SC-8'."""
    ns, sep, control = ref.partition(":")
    return f"{_PREFIX.get(ns, ns + ' ')}{control}" if sep else ref


def number_ranges(numbers: list[str]) -> str:
    """['T001', 'T002', 'T003', 'T007'] → 'T001–T003, T007' (a system's problems on one line)."""
    values = sorted(int(n[1:]) for n in numbers if n[1:].isdigit())
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(f"T{values[i]:03d}" + (f"–T{values[j]:03d}" if j > i else ""))
        i = j + 1
    return ", ".join(parts) or "—"


def scope_text(report: ReportData) -> str:
    t = LABELS[report.lang]
    names = {"departments": t["department"], "tiers": t["tier"], "mlps_levels": t["level"], "systems": t["system"]}
    parts = [f"{names.get(k, k)}: {', '.join(t.get(str(x), str(x)) for x in v)}" for k, v in report.scope.items() if v]
    return "; ".join(parts) or t["scope_all"]


def toc_entries(report: ReportData) -> list[tuple[str, str, bool]]:
    t = LABELS[report.lang]
    toc = [
        ("s-overview", t["s_overview"], False),
        ("s-summary", t["s_summary"], False),
        ("s-problems", t["s_problems"], False),
        ("s-remediation", t["s_remediation"], False),
        ("s-departments", t["s_departments"], False),
    ]
    toc += [(f"d-{i}", f"{d.number} {d.name}", True) for i, d in enumerate(report.departments, start=1)]
    if report.detailed:
        toc.append(("s-records", t["s_records"], False))
    toc.append(("s-exceptions", t["s_exceptions"], False))
    return toc


def render_html(report: ReportData) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["control_label"] = control_label
    env.filters["number_ranges"] = number_ranges
    records_by_system: list[tuple[str, list[ControlRecord], list[tuple[str, int]]]] = []
    if report.detailed:
        failing: dict[str, list[ControlRecord]] = defaultdict(list)
        rest: dict[str, Counter[str]] = defaultdict(Counter)
        order: list[str] = []
        for r in report.records:
            if r.system_id not in failing and r.system_id not in rest:
                order.append(r.system_id)
            if r.verdict in ("non_compliant", "partially_compliant"):
                failing[r.system_id].append(r)
            else:
                rest[r.system_id][r.verdict] += 1  # unassessable and quiet rows: counted, not listed
        records_by_system = [
            (sid, failing.get(sid, []), [(v, rest[sid][v]) for v in VERDICTS if rest[sid][v]]) for sid in order
        ]
    return env.get_template("compliance.html").render(
        report=report,
        t=LABELS[report.lang],
        lang=report.lang,
        verdicts=VERDICTS,
        pct=_pct,
        local=local_time,
        scope_text=scope_text(report),
        toc=toc_entries(report),
        records_by_system=records_by_system,
    )


def render_pdf(report: ReportData, output: Path, browser: Chromium | None = None) -> int:
    """Print the HTML report with headless Chromium (which embeds the CJK fonts); returns the page count."""
    return render_pdf_file(render_html(report), output, LABELS[report.lang]["page_footer"], browser)


#: (machine name, label key, value) per CSV/XLSX column
def _columns(t: dict[str, str]) -> list[tuple[str, str, Callable[[ControlRecord], Any]]]:
    return [
        ("system_id", "system_id", lambda r: r.system_id),
        ("system_name", "name", lambda r: r.system_name),
        ("department", "department", lambda r: r.department),
        ("tier", "tier", lambda r: t.get(r.tier, r.tier)),
        ("mlps_level", "mlps_level", lambda r: r.mlps_level),
        ("framework", "framework", lambda r: r.framework),
        ("control", "control", lambda r: r.control),
        ("title", "clause", lambda r: plain(r.title)),
        ("layer", "layer", lambda r: r.layer),
        ("targets", "target", lambda r: "; ".join(r.targets)),
        ("observed", "observed", lambda r: plain(r.observed)),
        ("observed_at", "when", lambda r: local_time(r.observed_at) if r.observed_at else ""),
        ("method", "method", lambda r: r.method),
        ("verdict", "verdict", lambda r: t[r.verdict]),
        ("risk", "risk", lambda r: t[r.risk] if r.risk else ""),
    ]


CSV_COLUMNS = tuple(name for name, _, _ in _columns(LABELS["en"]))
_ZH_HEADERS = {"system_id": "系统编号", "mlps_level": "等保级别"}


def _headers(lang: str) -> list[str]:
    """English: the machine column names (stable for scripts); Chinese: Chinese headers."""
    if lang == "en":
        return list(CSV_COLUMNS)
    t = LABELS[lang]
    return [_ZH_HEADERS.get(key, t.get(key, name)) for name, key, _ in _columns(t)]


def csv_rows(report: ReportData) -> Iterator[list[Any]]:
    t = LABELS[report.lang]
    cols = _columns(t)
    yield _headers(report.lang)
    for r in report.records:
        yield [get(r) for _, _, get in cols]


def write_csv(report: ReportData, output: Path) -> None:
    with output.open("w", encoding="utf-8-sig", newline="") as fh:  # BOM: Excel opens Chinese CSV right
        csv.writer(fh).writerows(csv_rows(report))


def render_xlsx(report: ReportData, output: Path) -> None:
    """Write-only workbook (rows streamed to disk): an estate's 40,000 records in seconds, not minutes."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

    t = LABELS[report.lang]
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="E8ECF2")
    wb = Workbook(write_only=True)

    def head(sheet: WriteOnlyWorksheet, values: list[Any]) -> None:
        cells = []
        for v in values:
            cell = WriteOnlyCell(sheet, value=v)
            cell.font, cell.fill = bold, fill
            cells.append(cell)
        sheet.append(cells)

    summary = wb.create_sheet("summary" if report.lang == "en" else "总体情况")
    header = [t["department"], t["systems"], t["assessed"], *(t[v] for v in VERDICTS), t["ratio"]]
    first = 4
    summary.auto_filter.ref = f"A{first}:{get_column_letter(len(header))}{first + len(report.by_department)}"
    summary.append([report.title])
    c = report.cover
    summary.append([t["report_number"], c.report_number if c else "", t["cover_date"], c.generated if c else ""])
    summary.append([t["cover_period"], f"{c.period_start} — {c.period_end}" if c else "", t["tz_note"]])
    head(summary, header)
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

    problems = wb.create_sheet("problems" if report.lang == "en" else "安全问题")
    p_cols = [t["no"], t["risk"], t["problem"], t["remediation"], t["affected"], t["controls"], t["affected_systems"]]
    problems.freeze_panes = "A2"
    head(problems, p_cols)
    for p in report.problems:
        problems.append(
            [
                p.number,
                t[p.risk],
                plain(p.title),
                plain(p.remediation),
                p.systems,
                ", ".join(control_label(x) for x in p.controls),
                "; ".join(f"{a.system_id} ({', '.join(a.targets)})" for a in p.affected)[:32000],  # Excel cell limit
            ]
        )

    columns = [t["system"], t["layer"], t["control"], t["clause"], t["target"], t["observed"], t["when"]]
    columns += [t["verdict"], t["risk"], t["framework"]]
    by_dept: dict[str, list[ControlRecord]] = defaultdict(list)
    for r in report.records:
        by_dept[r.department].append(r)
    taken = list(wb.sheetnames)
    for dept, rows in sorted(by_dept.items()):
        name = _sheet_name(dept, taken)
        taken.append(name)
        sheet = wb.create_sheet(name)
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(rows) + 1}"
        sheet.freeze_panes = "A2"
        for i, width in enumerate((28, 14, 12, 36, 30, 40, 17, 14, 8, 12), start=1):
            sheet.column_dimensions[get_column_letter(i)].width = width
        head(sheet, columns)
        for r in rows:
            sheet.append(
                [
                    f"{r.system_name} ({r.system_id})",
                    r.layer,
                    r.control,
                    plain(r.title),
                    ", ".join(r.targets),
                    plain(r.observed),
                    local_time(r.observed_at) if r.observed_at else "",
                    t[r.verdict],
                    t[r.risk] if r.risk else "",
                    r.framework,
                ]
            )
    wb.save(output)


def _sheet_name(name: str, taken: list[str]) -> str:
    clean = "".join(c for c in name if c not in "[]:*?/\\")[:28] or "sheet"
    candidate, n = clean, 2
    while candidate in taken:
        candidate, n = f"{clean[:25]}~{n}", n + 1
    return candidate


_UNSAFE = re.compile(r"[\\/:*?\"<>|\s]+")


def split_path(output: Path, part: str) -> Path:
    """report.pdf + '区政务服务中心' → report-区政务服务中心.pdf (characters a file system refuses replaced)."""
    safe = _UNSAFE.sub("_", part).strip("._") or "part"
    return output.with_name(f"{output.stem}-{safe}{output.suffix}")


def write_report(report: ReportData, fmt: str, output: Path, browser: Chromium | None = None) -> int:
    """Write the report; returns the PDF's page count (0 for other formats)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "html":
            output.write_text(render_html(report), encoding="utf-8")
        elif fmt == "pdf":
            return render_pdf(report, output, browser)
        elif fmt == "xlsx":
            render_xlsx(report, output)
        elif fmt == "csv":
            write_csv(report, output)
        elif fmt == "json":
            with output.open("w", encoding="utf-8") as fh:
                json.dump(report.to_dict(), fh, ensure_ascii=False, indent=1)
        elif fmt == "oscal":
            with output.open("w", encoding="utf-8") as fh:
                json.dump(assessment_results(report), fh, ensure_ascii=False, indent=1)
        else:
            raise ReportError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    except OSError as exc:
        raise ReportError(f"{output}: cannot write the report: {exc.strerror or exc}") from None
    return 0
