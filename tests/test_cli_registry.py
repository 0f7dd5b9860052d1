"""`sentinel registry validate`: exit 0 on a good file; exit 2 with every problem at FILE:LINE, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.cli.main import main
from tests.support.registry_files import BAD, GOOD


def test_cli_exit_codes_and_no_traceback(
    write_file: Callable[[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_file("good.yaml", GOOD)
    assert main(["registry", "validate", str(good)]) == 0
    assert "1 systems" in capsys.readouterr().out
    bad = write_file("bad.yaml", BAD)
    assert main(["registry", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{bad}:2:" in err and "problems found" in err
    broken = write_file("broken.yaml", "systems:\n  - id: [unclosed\n")
    assert main(["registry", "validate", str(broken)]) == 2
    assert f"{broken}:" in capsys.readouterr().err
    assert main(["registry", "validate", str(good.parent / "absent.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
