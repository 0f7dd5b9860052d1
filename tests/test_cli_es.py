"""`sentinel es setup`, `sentinel es ship` and `sentinel config show` through click."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.config_cmd import config
from sentinel.cli.es_cmd import es
from sentinel.errors import InputError
from tests.es_double import EsDouble
from tests.support.es_scenarios import es_settings, open_store
from tests.support.findings import make_finding

SECRET_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
SECRET_PASSWORD = "s3cr3t-p@ss"


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Iterator[EsDouble]:
    with EsDouble() as server:
        monkeypatch.setenv("SENTINEL_ELASTICSEARCH_URL", server.url)
        monkeypatch.setenv("SENTINEL_ELASTICSEARCH_BACKOFF_INITIAL", "0.01")
        yield server


def test_setup_twice_changes_nothing(double: EsDouble) -> None:
    first = CliRunner().invoke(es, ["setup"])
    assert first.exit_code == 0, first.output
    assert "created" in first.output
    assert "9 changes" in first.output
    second = CliRunner().invoke(es, ["setup"])
    assert second.exit_code == 0, second.output
    assert "0 changes" in second.output
    assert "created" not in second.output


def test_ship_drains_and_exits_zero(double: EsDouble, tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", es_settings(double.url))
    store.save_findings([make_finding(i) for i in range(5)])
    result = CliRunner().invoke(es, ["ship", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert "shipped 10" in result.output
    assert "0 left in the outbox" in result.output
    assert double.count("sentinel-findings-latest-default") == 5


def test_ship_unreachable_exits_nonzero_and_keeps_everything(double: EsDouble, tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", es_settings(double.url))
    store.save_findings([make_finding(i) for i in range(5)])
    double.stop()
    result = CliRunner().invoke(es, ["ship", "--store", str(tmp_path / "s.db"), "--timeout", "0.2"])
    assert result.exit_code == 3
    assert "10 documents stay queued" in result.output
    assert "unreachable" in result.output
    assert "Traceback" not in result.output
    double.start()
    result = CliRunner().invoke(es, ["ship", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert double.count("sentinel-findings-latest-default") == 5


def test_setup_against_a_refusing_cluster_says_so(double: EsDouble) -> None:
    double.stop()
    result = CliRunner().invoke(es, ["setup"])
    assert result.exit_code == 3
    assert f"setup at {double.url} failed" in result.output


def test_api_key_is_sent_and_never_printed_or_logged(
    double: EsDouble, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    double.api_key = SECRET_KEY
    monkeypatch.setenv("SENTINEL_ELASTICSEARCH_API_KEY", SECRET_KEY)
    with caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(es, ["setup"])
    assert result.exit_code == 0, result.output
    assert SECRET_KEY not in result.output
    assert SECRET_KEY not in caplog.text


def test_missing_configuration_is_a_clear_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTINEL_ELASTICSEARCH_URL", raising=False)
    result = CliRunner().invoke(es, ["ship"])
    assert isinstance(result.exception, InputError)
    assert "SENTINEL_ELASTICSEARCH_URL" in str(result.exception.problems[0])


def test_bad_setting_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_ELASTICSEARCH_URL", "es.local:9200")
    result = CliRunner().invoke(es, ["setup"])
    assert isinstance(result.exception, InputError)
    assert "elasticsearch.url" in str(result.exception.problems[0])


def test_config_show_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTINEL_ELASTICSEARCH_URL", raising=False)
    cfg = tmp_path / "sentinel.yaml"
    cfg.write_text(
        "sinks:\n"
        "  elasticsearch:\n"
        "    url: https://elastic:hunter2@es.soc.example:9200\n"
        "    username: sentinel\n"
        f"    password: {SECRET_PASSWORD}\n"
        "  jsonl: {path: out.jsonl}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SENTINEL_ELASTICSEARCH_API_KEY", SECRET_KEY)
    result = CliRunner().invoke(config, ["show", "--config", str(cfg), "--format", "json"])
    assert result.exit_code == 0, result.output
    for secret in (SECRET_KEY, SECRET_PASSWORD, "hunter2"):
        assert secret not in result.output
    shown = json.loads(result.output)
    assert shown["elasticsearch"]["api_key"] == "********"
    assert shown["elasticsearch"]["password"] == "********"
    assert shown["elasticsearch"]["url"] == "https://********@es.soc.example:9200"
    assert shown["elasticsearch"]["username"] == "sentinel"
    assert "elasticsearch" not in shown["sinks"]
    yaml_out = CliRunner().invoke(config, ["show", "--config", str(cfg)])
    assert yaml_out.exit_code == 0
    assert SECRET_PASSWORD not in yaml_out.output
    assert "api_key: '********'" in yaml_out.output
