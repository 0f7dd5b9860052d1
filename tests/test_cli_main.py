"""main.py's process exit: without the interpreter's teardown when nothing is left running, yet with every byte of
output, the exit code, and the exit handlers; the normal exit when a thread is still working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SENTINEL = [sys.executable, "-c", "from sentinel.cli.main import entrypoint; entrypoint()"]


def test_the_whole_output_arrives_through_a_pipe_with_the_exit_code(tmp_path: Path) -> None:
    capture = Path(__file__).resolve().parents[1] / "rules" / "tests" / "traffic" / "portscan_syn.pcap"
    argv = [*SENTINEL, "pcap", "analyze", str(capture), "--format", "json", "--store", str(tmp_path / "s.db")]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    findings = json.loads(done.stdout)  # every byte arrived: the document parses
    assert [f["rule_id"] for f in findings] == ["traffic_portscan_vertical"], done.stdout[-500:]
    bad = tmp_path / "registry.yaml"
    bad.write_text("scope: {allow: [10.0.0.0/8]}\nsystems: [{id: x}]\n")
    refused = subprocess.run(
        [*SENTINEL, "registry", "validate", str(bad)], check=False, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and f"{bad}:2" in refused.stderr and "Traceback" not in refused.stderr


def test_exit_handlers_run_and_the_code_is_kept() -> None:
    script = (
        "import atexit, logging, sys\n"
        "from sentinel.cli.main import exit_process\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        "print('output', end='')\n"  # not flushed yet: exit_process must flush it
        "logging.getLogger('t').warning('logged')\n"
        "exit_process(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == "outputhandler ran\n" and "logged" in done.stderr


def test_a_thread_still_working_gets_the_normal_exit(tmp_path: Path) -> None:
    marker = tmp_path / "written"
    script = (
        "import threading, time\n"
        "from sentinel.cli.main import exit_process\n"
        f"def work():\n    time.sleep(0.3)\n    open({str(marker)!r}, 'w').write('done')\n"
        "threading.Thread(target=work).start()\n"
        "exit_process(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "done"  # the interpreter waited for the thread, as a normal exit does
