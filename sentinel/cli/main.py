"""The `sentinel` command: a thin click front end; `main(argv) -> int` maps errors to exit codes."""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import sqlite3
import sys
import threading
from typing import NoReturn

import click

from sentinel import __version__
from sentinel.cli.common import EXIT_USAGE
from sentinel.errors import InputError, StoreError

#: command name -> "module:attribute"; imported only when used, so `sentinel pcap ...` does not pay for aiohttp,
#: the web view or the report renderers at start-up
COMMANDS = {
    "registry": "sentinel.cli.registry_cmd:registry",
    "scan": "sentinel.cli.scan_cmd:scan",
    "run": "sentinel.cli.run_cmd:run",
    "serve": "sentinel.cli.serve_cmd:serve",
    "findings": "sentinel.cli.findings_cmd:findings",
    "advisory": "sentinel.cli.advisory_cmd:advisory",
    "alerts": "sentinel.cli.alerts_cmd:alerts",
    "compliance": "sentinel.cli.compliance_cmd:compliance",
    "notify": "sentinel.cli.notify_cmd:notify",
    "report": "sentinel.cli.report_cmd:report",
    "pcap": "sentinel.cli.pcap_cmd:pcap",
    "sniff": "sentinel.cli.pcap_cmd:sniff",
    "es": "sentinel.cli.es_cmd:es",
    "sinks": "sentinel.cli.sinks_cmd:sinks",
    "config": "sentinel.cli.config_cmd:config",
    "rules": "sentinel.cli.rules_cmd:rules",
    "demo": "sentinel.cli.demo_cmd:demo",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="sentinel")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Sentinel: network-security situational awareness for registered systems."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    except sqlite3.DatabaseError as exc:  # damage first met on a read after the store opened (quick_check passed)
        click.echo(
            f"error: the store could not be read ({exc}); it may be damaged: restore it from a backup, or check it "
            "with: sqlite3 FILE 'PRAGMA integrity_check'",
            err=True,
        )
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
    exit_process(main())


def exit_process(code: int) -> NoReturn:
    """End the process with `code`. Freeing every module and object one by one at interpreter exit took
    0.15-0.25 s after a large capture (a tenth of `pcap analyze` on 2 M packets) and serves nothing once the
    command is done; so when no thread is left but this one and the output is flushed, the exit handlers
    run (logging's flush, multiprocessing's, any library's) and the process ends without that teardown.
    Otherwise, or if flushing fails (a closed pipe), the normal exit runs and reports as it always has."""
    if threading.active_count() == 1:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)
        atexit._run_exitfuncs()
        os._exit(code)
    sys.exit(code)
