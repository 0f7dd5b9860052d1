"""The `sentinel` command: a thin click front end; `main(argv) -> int` maps errors to exit codes."""

from __future__ import annotations

import logging
import sys

import click

from sentinel import __version__
from sentinel.cli.alerts_cmd import alerts
from sentinel.cli.common import EXIT_USAGE
from sentinel.cli.compliance_cmd import compliance
from sentinel.cli.config_cmd import config
from sentinel.cli.demo_cmd import demo
from sentinel.cli.es_cmd import es
from sentinel.cli.findings_cmd import findings
from sentinel.cli.notify_cmd import notify
from sentinel.cli.pcap_cmd import pcap, sniff
from sentinel.cli.registry_cmd import registry
from sentinel.cli.report_cmd import report
from sentinel.cli.rules_cmd import rules
from sentinel.cli.run_cmd import run
from sentinel.cli.scan_cmd import scan
from sentinel.cli.serve_cmd import serve
from sentinel.errors import InputError, StoreError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="sentinel")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Sentinel: network-security situational awareness for registered systems."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for command in (
    registry,
    scan,
    run,
    serve,
    findings,
    alerts,
    compliance,
    notify,
    report,
    pcap,
    sniff,
    es,
    config,
    rules,
    demo,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="sentinel", standalone_mode=False)
    except InputError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        n = len(exc.problems)
        click.echo(f"{n} problem{'s' if n != 1 else ''} found.", err=True)
        return EXIT_USAGE
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    return result if isinstance(result, int) else 0


def entrypoint() -> None:
    sys.exit(main())
