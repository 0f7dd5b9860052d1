"""`sentinel demo`: start a small loopback estate, register it, scan it, show the findings, clean up."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from pathlib import Path

import click
from rich.panel import Panel
from rich.table import Table

from sentinel.app import Sentinel
from sentinel.cli.common import EXIT_OK, SEVERITY_STYLE, console, findings_table
from sentinel.config.settings import CollectorSettings, Settings
from sentinel.demo.estate import DemoEstate
from sentinel.models import Severity
from sentinel.models.finding import ACTIVE_STATUSES
from sentinel.registry.loader import load_registry
from sentinel.sinks import SweepOutcome


def default_workdir() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "sentinel" / "demo"


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo keeps its registry, certificates and store (reset on each run).",
)
def demo(workdir: Path | None) -> int:
    """Run Sentinel end to end on a small estate of real services on loopback (no root needed)."""
    folder = workdir or default_workdir()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    out = console()
    out.print(
        Panel.fit("Sentinel demo: starting five registered systems on 127.77.0.0/24 (loopback only)", style="bold")
    )
    app, outcome = asyncio.run(_run(folder))
    try:
        _report(app, outcome, folder)
    finally:
        app.close()
    return EXIT_OK


async def _run(folder: Path) -> tuple[Sentinel, SweepOutcome]:
    async with DemoEstate(folder) as estate:
        registry_file = folder / "registry.yaml"
        registry_file.write_text(estate.registry_yaml(), encoding="utf-8")
        assert estate.ca is not None
        settings = Settings(
            registry=registry_file,
            store=folder / "sentinel.db",
            collectors=CollectorSettings(
                tls={"ca_file": estate.ca.files.cert},
                tls_scan={"ca_file": estate.ca.files.cert},
                connect_timeout=2.0,
                per_target_rate=20,
                per_target_burst=10,
            ),
        )
        app = Sentinel(settings, registry=load_registry(registry_file))
        console().print(f"Registered {len(estate.systems)} systems in {registry_file}; scanning...")
        outcome = await app.sweep()
    return app, outcome


def _report(app: Sentinel, outcome: SweepOutcome, folder: Path) -> None:
    out = console()
    took = (outcome.finished_at - outcome.started_at).total_seconds()
    active = app.store.list_findings(statuses=list(ACTIVE_STATUSES))
    errors = sum(1 for o in outcome.observations if o.status.value == "error")
    out.print(
        f"Swept {len(app.registry.systems)} systems in {took:.1f} s: {len(outcome.observations)} observations, "
        f"{errors} could not observe; {len(active)} open findings.\n"
    )

    by_system = Table(title="Estate", header_style="bold")
    for col in ("System", "Name", "Tier", "MLPS", "Department", "Open findings", "Worst"):
        by_system.add_column(col)
    counts = Counter(f.system_id for f in active)
    for s in app.registry.systems:
        worst = max((f.severity for f in active if f.system_id == s.id), key=lambda sev: sev.rank, default=None)
        by_system.add_row(
            s.id,
            s.name,
            s.tier.value,
            str(s.mlps_level),
            s.owner.department,
            str(counts[s.id]),
            f"[{SEVERITY_STYLE[worst]}]{worst.value}[/]" if worst else "[green]ok[/green]",
        )
    out.print(by_system)
    out.print(findings_table(active, title="Open findings"))
    sev = Counter(f.severity for f in active)
    out.print("By severity: " + ", ".join(f"{sev[s]} {s.value}" for s in reversed(Severity) if sev[s]))
    store, registry = folder / "sentinel.db", folder / "registry.yaml"
    example = active[0].id[:12] if active else "ID"
    out.print(
        "\n".join(
            [
                "[bold]The demo servers are stopped; the registry and the store are kept. What to run next:[/bold]",
                f"  sentinel findings list --store {store}",
                f"  sentinel findings show {example} --store {store}",
                f"  sentinel findings ack {example} --reason 'ticket 42' --store {store}",
                f"  sentinel registry validate {registry}",
                f"  sentinel scan --registry {registry} --dry-run",
                "  sentinel rules list",
            ]
        ),
        soft_wrap=True,
    )
