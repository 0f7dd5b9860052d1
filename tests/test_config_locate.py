"""Every settings problem names where the setting was given: FILE:LINE of its key in the settings file, the
SENTINEL_* variable, or the command line; never a bare `settings:` (issue 15). Through the CLI, as users see it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sentinel.cli.main import main
from sentinel.config.settings import load_settings
from sentinel.yamlio import MAX_ALIAS_NODES
from tests.support.yaml_bombs import shared_alias_bomb

EXAMPLE_REGISTRY = Path(__file__).resolve().parent.parent / "docs" / "examples" / "registry.yaml"


def _dry_run(config: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """`scan --dry-run --config FILE`: exit 2, and the problem lines it printed."""
    code = main(["scan", "--dry-run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not re.fullmatch(r"\d+ problems? found\.", line)]
    assert not [line for line in lines if line.startswith("settings:")], err
    return lines


def _settings_file(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "sentinel.yaml"
    config.write_text(f"registry: {EXAMPLE_REGISTRY}\nstore: {tmp_path / 's.db'}\n{body}", encoding="utf-8")
    return config


def test_a_bounded_shared_alias_bomb_under_a_sink_is_refused_at_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Expansion is bounded, so a smaller bomb loads: the sink's own check then names each key's line."""
    bomb = shared_alias_bomb(levels=4, width=9, indent="    ")  # 9**4 nodes: under the loader's limit
    assert MAX_ALIAS_NODES > 9**4
    config = _settings_file(tmp_path, f"sinks:\n  jsonl:\n    path: {tmp_path / 'out.jsonl'}\n{bomb}")
    assert _dry_run(config, capsys) == [
        f"{config}:6: unknown key 'l0' (in sinks.jsonl)",
        f"{config}:7: unknown key 'l1' (in sinks.jsonl)",
        f"{config}:8: unknown key 'l2' (in sinks.jsonl)",
        f"{config}:9: unknown key 'l3' (in sinks.jsonl)",
    ]


def test_sink_mistakes_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _settings_file(
        tmp_path,
        "sinks:\n"
        "  jsonl:\n"  # 4: no path
        "    batch_size: 0\n"  # 5
        "  syslog:\n"
        "    host: siem.example\n"
        "    port: 70000\n"  # 8
        "  splunk: {url: 'https://x'}\n",  # 9
    )
    lines = _dry_run(config, capsys)
    assert f"{config}:4: sinks.jsonl.path: Field required" in lines
    assert f"{config}:5: sinks.jsonl.batch_size: 0 must be at least 1" in lines
    assert f"{config}:8: sinks.syslog.port: 70000 must be at most 65535" in lines
    assert any(line.startswith(f"{config}:9: sinks: unknown sink 'splunk' (available: jsonl,") for line in lines)
    assert len(lines) == 4, lines


def test_an_unknown_probe_names_its_list_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _settings_file(tmp_path, "collectors:\n  probes:\n    - tcp_ports\n    - htp\n")
    (line,) = _dry_run(config, capsys)
    assert line.startswith(f"{config}:6: collectors.probes.1: unknown probe 'htp' (available: tcp_ports,")


def test_a_value_from_the_environment_names_the_variable_not_a_line_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file has a `collectors:` section, but the bad value is the variable's: no line of the file is to blame."""
    config = _settings_file(tmp_path, "collectors:\n  per_target_rate: 5\nsinks:\n  jsonl: {}\n")
    monkeypatch.setenv("SENTINEL_COLLECTORS__CONNECT_TIMEOUT", "-1")
    monkeypatch.setenv("SENTINEL_SINKS__SYSLOG__PORT", "1514")  # a section only the environment gives
    assert sorted(_dry_run(config, capsys)) == [
        f"{config}:6: sinks.jsonl.path: Field required",
        "environment: SENTINEL_COLLECTORS__CONNECT_TIMEOUT: collectors.connect_timeout: '-1' must be more than 0.0",
        "environment: sinks.syslog.host: Field required",
    ]


def test_settings_locate_places_a_later_problem_where_its_key_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For checks a stage makes after loading (a token file it cannot read, a sink it cannot reach)."""
    config = _settings_file(
        tmp_path,
        "collectors:\n  dns_resolvers: [10.0.0.53]\n"  # 3-4: the deprecated flat key, moved to collectors.dns
        "web:\n  users:\n    - {name: alice, role: operator, token_env: ALICE}\n",  # 5-7
    )
    monkeypatch.setenv("SENTINEL_SERVE__LISTEN", "127.0.0.1:9999")
    with pytest.warns(FutureWarning):
        settings = load_settings(config, {"store": str(tmp_path / "flag.db")})
    assert str(settings.locate(("web", "users", 0, "token_env"), "x")) == f"{config}:7: x"
    assert str(settings.locate(("collectors", "dns", "resolvers"), "x")) == f"{config}:4: x"
    assert str(settings.locate(("serve", "listen"), "x")) == "environment: SENTINEL_SERVE__LISTEN: x"
    assert str(settings.locate(("store",), "x")) == "command line: x"
    assert str(settings.model_copy().locate(("web", "users"), "x")) == f"{config}:6: x"
