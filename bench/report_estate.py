"""Estate benchmark for auditors' output: `compliance status` and every report format on 1,354 systems.

    python -m bench.report_estate [--systems 1354] [--findings 30000] [--formats html,pdf,xlsx,csv,json,oscal]

The estate (registry YAML + SQLite store) is generated directly through the store API, no network: 40
departments, three tiers, MLPS levels 2-3 (a few 4), findings of the shipped rules that cite MLPS clauses,
and fresh ok observations of every kind those rules read (so quiet requirements are `no_remote_finding`).
Prints, for the whole estate and for one department: the time of `compliance status`, and each format's time,
size and (PDF) page count. Every command runs as a subprocess, as an operator would run it.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from sentinel.engine.loader import load_rules
from sentinel.models import Finding, FindingStatus, Observation
from sentinel.models.finding import fingerprint
from sentinel.paths import shipped_rules_dir
from sentinel.store import SqliteStore

DEPARTMENTS = [
    f"{prefix}{kind}"
    for prefix in ("市", "东城区", "西城区", "南湖区", "北山区")
    for kind in ("大数据管理局", "公安局", "教育局", "卫生健康委", "人社局", "政务服务中心", "住建局", "交通运输局")
]
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def build_estate(folder: Path, systems: int = 1354, findings: int = 30000, seed: int = 13) -> tuple[Path, Path]:
    """Write folder/registry.yaml and folder/sentinel.db; returns their paths."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for i in range(systems):
        level = 4 if i % 97 == 0 else 2 + (i % 5 < 2)  # ~40 % level 3, ~1 % level 4
        docs.append(
            {
                "id": f"sys-{i:04d}",
                "name": f"{DEPARTMENTS[i % len(DEPARTMENTS)][:-1]}业务系统{i:04d}",
                "owner": {"department": DEPARTMENTS[i % len(DEPARTMENTS)]},
                "tier": ("city", "district", "street")[i % 3],
                "mlps_level": level,
                "tags": ["e-gov"] if i % 4 == 0 else [],
                "endpoints": [
                    {"url": f"https://s{i}.gov.example.cn/"},
                    {"host": f"10.{20 + i // 250}.{i % 250}.10", "ports": [22, 443]},
                ],
            }
        )
    registry = folder / "registry.yaml"
    registry.write_text(
        yaml.safe_dump({"scope": {"allow": ["10.0.0.0/8", ".gov.example.cn"]}, "systems": docs}, allow_unicode=True),
        encoding="utf-8",
    )
    rules = [r for r in load_rules([shipped_rules_dir()]) if r.enabled and r.controls.mlps]
    kinds = sorted({k for r in rules for k in r.observation})
    store = SqliteStore(folder / "sentinel.db")
    try:
        observations = [
            Observation(kind, d["id"], f"s{i}.gov.example.cn:443", NOW - timedelta(hours=1), "bench")
            for i, d in enumerate(docs)
            for kind in kinds
            if not (i % 50 == 0 and kind == "tls")  # a few systems whose TLS was never observed
        ]
        store.save_observations(observations)
        per_system = max(1, findings // systems)
        made: dict[str, Finding] = {}
        while len(made) < findings:
            i = rng.randrange(systems)
            for rule in rng.sample(rules, min(per_system, len(rules))):
                if len(made) >= findings:
                    break
                target = f"10.{20 + i // 250}.{i % 250}.10:{rng.choice((22, 443, 3306, 3389, 6379, 8080))}/tcp"
                fid = fingerprint(rule.id, f"sys-{i:04d}", target)
                seen = NOW - timedelta(days=rng.randrange(1, 90))
                made[fid] = Finding(
                    id=fid,
                    rule_id=rule.id,
                    title=rule.title,
                    severity=rule.severity,
                    category=rule.category,
                    system_id=f"sys-{i:04d}",
                    target=target,
                    status=FindingStatus.SUPPRESSED if rng.random() < 0.01 else FindingStatus.OPEN,
                    first_seen=seen,
                    last_seen=NOW - timedelta(hours=1),
                    occurrences=rng.randrange(1, 50),
                    evidence={"state": "open"},
                    controls=rule.controls.flat(),
                    remediation=rule.remediation,
                    status_reason="vendor maintenance window, EXC-7" if rng.random() < 0.01 else None,
                )
        store.save_findings(made.values())
    finally:
        store.close()
    return registry, folder / "sentinel.db"


def _run(args: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sentinel", *args], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"sentinel {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return elapsed, done


def pdf_pages(path: Path) -> int | None:
    if shutil.which("pdfinfo") is None:
        return None
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=False).stdout
    return next((int(line.split()[-1]) for line in info.splitlines() if line.startswith("Pages:")), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=1354)
    parser.add_argument("--findings", type=int, default=30000)
    parser.add_argument("--formats", default="html,pdf,xlsx,csv,json,oscal")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-report-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        registry, db = build_estate(folder, opts.systems, opts.findings)
        print(f"estate: {opts.systems} systems, {opts.findings} findings, built in {time.perf_counter() - start:.1f} s")
        base = ["--registry", str(registry), "--store", str(db)]
        dept = DEPARTMENTS[0]
        for label, extra in (("estate", []), (f"department {dept}", ["--department", dept])):
            elapsed, done = _run(["compliance", "status", *base, *extra])
            lines = done.stdout.count("\n")
            print(f"{label}: compliance status (table) {elapsed:.1f} s, {lines} lines")
            elapsed, done = _run(["compliance", "status", *base, *extra, "--format", "jsonl"])
            print(f"{label}: compliance status --format jsonl {elapsed:.1f} s, {done.stdout.count(chr(10))} records")
            for fmt in opts.formats.split(","):
                out = folder / f"report-{'dept' if extra else 'estate'}.{fmt}"
                elapsed, _ = _run(
                    [
                        "report",
                        "compliance",
                        *base,
                        *extra,
                        "--until",
                        "2026-11-20T16:00",
                        "--format",
                        fmt,
                        "-o",
                        str(out),
                    ]
                )
                size = out.stat().st_size / 1e6
                pages = f", {pdf_pages(out)} pages" if fmt == "pdf" else ""
                print(f"{label}: report {fmt:5s} {elapsed:6.1f} s, {size:7.2f} MB{pages}")
        elapsed, _ = _run(
            [
                "report",
                "compliance",
                *base,
                "--until",
                "2026-11-20T16:00",
                "--format",
                "pdf",
                "--split",
                "department",
                "-o",
                str(folder / "split" / "r.pdf"),
            ]
        )
        files = sorted((folder / "split").glob("r-*.pdf"))
        pages = [pdf_pages(f) or 0 for f in files]
        print(
            f"estate: report pdf --split department {elapsed:.1f} s, {len(files)} files, "
            f"{min(pages)}-{max(pages)} pages each"
        )


if __name__ == "__main__":
    main()
