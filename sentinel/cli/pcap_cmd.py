"""`sentinel pcap analyze FILE...` and `sentinel sniff`: passive traffic analysis turned into findings.

Imports are made where they are needed, in the order the analysis needs them: the capture's child starts
before the rules engine, the store and the output code are even imported, which the parent then does
on another core while the child works.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sentinel.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    build_app,
    console,
    format_option,
    render_findings,
    settings_options,
)
from sentinel.cli.common import (
    registry_option as common_registry_option,
)
from sentinel.errors import InputError, Problem
from sentinel.models import Finding, Observation

if TYPE_CHECKING:
    from sentinel.app import Sentinel
    from sentinel.registry.models import Registry
    from sentinel.traffic.intel import ThreatIntel

registry_option = common_registry_option(
    "Registry file or folder (without one, every host is reported as unregistered)."
)
rules_option = click.option(
    "--rules",
    "rule_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Rules file or folder (repeatable; default: the shipped rules).",
)
intel_option = click.option(
    "--intel",
    "intel_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Threat-intelligence list file or folder of *.txt (repeatable; default: the shipped lists).",
)


def load_registry_or_empty(app: Sentinel) -> Registry:
    from sentinel.registry.models import Registry
    from sentinel.registry.scope import Scope

    if app.settings.registry is None:
        return Registry(scope=Scope(), systems=())
    return app.registry


def early_registry(registry_path: Path | None, config_file: Path | None) -> Registry | None:
    """The registry, when it can be known before the settings are: named on the command line (or by
    SENTINEL_REGISTRY, which click reads for --registry), or neither named nor possible (no settings
    file). None when only the settings file can tell."""
    from sentinel.registry.models import Registry
    from sentinel.registry.scope import Scope

    if registry_path is not None:
        from sentinel.registry.loader import load_registry

        return load_registry(registry_path)
    return Registry(scope=Scope(), systems=()) if config_file is None else None


def load_intel_lists(paths: Sequence[Path]) -> ThreatIntel:
    from sentinel.traffic.intel import ThreatIntel, load_intel, shipped_intel_dir

    if paths:
        return load_intel(list(paths))
    shipped = shipped_intel_dir()
    return load_intel([shipped]) if shipped.is_dir() else ThreatIntel()


def findings_from(app: Sentinel, registry: Registry, observations: list[Observation], source: str) -> list[Finding]:
    """The traffic's observations through the one ingest path (every rule, rules with memory included, accepted
    risks, the audit record naming `source`, the sinks); the findings this traffic showed."""
    from sentinel.traffic.analyze import with_unregistered

    traffic = app.sibling(with_unregistered(registry))
    try:
        changes = traffic.ingest(observations, app.clock(), source).changes
    finally:
        traffic.close()
    # the same ingest also closes the sweep-level checks (e.g. absence rules); show only what the traffic showed
    rules = app.rules.by_id
    traffic_rule = {rid for rid, r in rules.items() if any(k.startswith("traffic.") for k in r.observation)}
    found = [f for f in (*changes.new, *changes.updated, *changes.reopened) if f.rule_id in traffic_rule]
    return sorted(found, key=lambda f: (-f.severity.rank, f.system_id, f.rule_id, f.target))


@click.group()
def pcap() -> None:
    """Analyse packet captures (pcap, pcapng, gzip-compressed) for attacks and leaks."""


@pcap.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@registry_option
@rules_option
@intel_option
@click.option("--time-limit", type=click.FloatRange(min=1), default=600, show_default=True, help="Seconds per file.")
@click.option("--memory-limit", type=click.IntRange(min=64), default=1024, show_default=True, help="MB per file.")
@settings_options
@format_option()
def analyze(
    files: tuple[Path, ...],
    registry_path: Path | None,
    rule_paths: tuple[Path, ...],
    intel_paths: tuple[Path, ...],
    time_limit: float,
    memory_limit: int,
    config_file: Path | None,
    store: Path | None,
    fmt: str,
) -> int:
    """Analyse capture FILES; detections become findings attributed to registered systems by address."""
    from sentinel.traffic.idle import CpuSample

    started = CpuSample.now()  # whether a second CPU is idle is measured over the imports that follow
    from sentinel.traffic.isolate import analyze_batch

    # the first capture's child starts as soon as the registry is known: when the command line names it,
    # before the settings, rules and store are loaded, which then happens beside it on another core
    registry = early_registry(registry_path, config_file)
    app: Sentinel | None = None
    if registry is None:
        app = build_app(config_file, registry=registry_path, store=store, rules=list(rule_paths) or None)
    try:
        if registry is None:
            assert app is not None
            registry = load_registry_or_empty(app)
        intel = load_intel_lists(intel_paths)
        outcomes = analyze_batch(list(files), registry, intel, time_limit, memory_limit, idle_since=started)
        with closing(outcomes):
            if app is None:
                app = build_app(config_file, registry=registry_path, store=store, rules=list(rule_paths) or None)
            from sentinel.cli.progress import ProgressReporter

            observations: list[Observation] = []
            packets, failed = 0, 0
            err = console(stderr=True)
            with ProgressReporter("analysing captures", len(files)) as progress:
                _ = app.rules
                _ = app.tracker
                for outcome in outcomes:
                    progress.advance()
                    for warning in outcome.warnings:
                        err.print(f"warning: {warning}", markup=False)
                    if outcome.error is not None:
                        failed += 1
                        err.print(f"{outcome.path}: {outcome.error}", markup=False)
                        continue
                    packets += outcome.packets
                    observations.extend(outcome.observations)
        assert app is not None
        found = findings_from(app, registry, observations, "pcap:" + ",".join(str(f) for f in files)[:190])
        if fmt == "table":
            console().print(
                f"{len(files) - failed} of {len(files)} captures analysed, {packets} packets, "
                f"{len(observations)} observations, [bold]{len(found)} findings[/bold]."
            )
        render_findings(found, fmt, title="Findings in the captured traffic")
        return EXIT_USAGE if failed else EXIT_OK
    finally:
        if app is not None:
            app.close()


@click.command()
@click.option("--iface", required=True, help="Interface to capture on.")
@click.option("--bpf", help="BPF capture filter (e.g. 'tcp or udp port 53').")
@click.option("--duration", type=click.FloatRange(min=0.1), default=60, show_default=True, help="Seconds to capture.")
@click.option(
    "--max-packets", type=click.IntRange(min=0), default=0, help="Stop after this many packets (0: no limit)."
)
@click.option(
    "--ring-mb",
    type=click.IntRange(min=1, max=1024),
    default=32,
    show_default=True,
    help="Capture ring size; packets that arrive while it is full are dropped by the kernel (and reported).",
)
@registry_option
@rules_option
@intel_option
@settings_options
@format_option()
def sniff(
    iface: str,
    bpf: str | None,
    duration: float,
    max_packets: int,
    ring_mb: int,
    registry_path: Path | None,
    rule_paths: tuple[Path, ...],
    intel_paths: tuple[Path, ...],
    config_file: Path | None,
    store: Path | None,
    fmt: str,
) -> int:
    """Capture live traffic on an interface and run the traffic detectors over it."""
    from sentinel.traffic.sniff import sniff as sniff_live

    app = build_app(config_file, registry=registry_path, store=store, rules=list(rule_paths) or None)
    try:
        registry = load_registry_or_empty(app)
        intel = load_intel_lists(intel_paths)
        _ = app.rules
        try:
            result = sniff_live(iface, bpf, duration, registry, intel, max_packets, ring_mb * 1024)
        except (OSError, ValueError) as exc:  # no such interface, no permission, bad filter
            raise InputError([Problem(f"--iface {iface}", None, f"cannot capture: {exc}")]) from None
        except Exception as exc:  # scapy reports bad BPF filters with its own exception type
            if type(exc).__name__ == "Scapy_Exception":
                raise InputError([Problem(f"--bpf {bpf}", None, str(exc))]) from None
            raise
        found = findings_from(app, registry, result.observations, f"sniff:{iface}")
        if result.lossy:  # also a traffic_capture_lossy finding; said here so it is never missed
            console(stderr=True).print(
                f"warning: the kernel dropped {result.dropped} of {result.received} packets on {iface} "
                "(capture ring full): the detections are incomplete",
                markup=False,
            )
        if fmt == "table":
            console().print(
                f"{result.packets} packets analysed on {iface} ({result.received} received by the filter, "
                f"{result.dropped} dropped by the kernel); [bold]{len(found)} findings[/bold]."
            )
        render_findings(found, fmt, title=f"Findings in the traffic on {iface}")
        return EXIT_OK
    finally:
        app.close()
