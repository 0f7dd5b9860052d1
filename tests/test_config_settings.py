"""Settings: each probe's own options under `collectors.<probe>` (file and environment), the deprecated flat keys,
relative paths rebased by their field's type, the default probe lists from the probes' declared schedule, and every
mistake at FILE:LINE."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.collectors import BUILTIN_PROBES, build_probes
from sentinel.collectors.dns_probe import DnsOptions, DnsProbe
from sentinel.collectors.http_security import HttpSecurityProbe
from sentinel.collectors.port_discovery import PortDiscoveryProbe
from sentinel.collectors.tcp_ports import TcpPortOptions, TcpPortProbe
from sentinel.collectors.tls_cert import TlsOptions
from sentinel.collectors.web_integrity import WebIntegrityProbe
from sentinel.config.settings import HIGH_RISK_PORTS, CollectorSettings, Settings, load_settings
from sentinel.errors import InputError

WriteFile = Callable[[str, str], Path]


def _load(path: Path | None, env: dict[str, str] | None = None) -> tuple[Settings, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings(path, {}, env or {})
    return settings, [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]


def _problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(InputError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        load_settings(path, {}, env or {})
    return [str(p) for p in err.value.problems]


def test_probe_options_from_the_file_reach_the_probes(write_file: WriteFile) -> None:
    cfg = write_file(
        "sentinel.yaml",
        """
        collectors:
          connect_timeout: 2
          tcp_ports: {high_risk_ports: [3306]}
          dns: {resolvers: [10.20.0.53]}
          http_security: {max_path_checks: 7}
          port_discovery: {ports: [443, 22, 22]}
        """,
    )
    settings, deprecations = _load(cfg)
    assert deprecations == []
    c = settings.collectors
    assert c.connect_timeout == 2
    assert TcpPortProbe(c).options.high_risk_ports == [3306]
    assert DnsProbe(c).resolvers() == ["10.20.0.53"]
    assert HttpSecurityProbe(c).max_path_checks == 7
    assert PortDiscoveryProbe(c).ports() == (22, 443)
    # a probe with no section of its own gets its defaults
    assert c.model_dump()["banners"]["high_risk_ports"] == list(HIGH_RISK_PORTS)


def test_probe_options_from_the_environment_override_the_file(write_file: WriteFile) -> None:
    cfg = write_file(
        "sentinel.yaml", "collectors:\n  dns: {resolvers: [10.0.0.1]}\n  tcp_ports: {high_risk_ports: [21]}\n"
    )
    env = {
        "SENTINEL_COLLECTORS__DNS__RESOLVERS": '["10.0.0.2", "10.0.0.3"]',
        "SENTINEL_COLLECTORS__HTTP_SECURITY__MAX_PATH_CHECKS": "9",
        "SENTINEL_COLLECTORS__WEB_INTEGRITY__PAGE_BYTES": "20000",
    }
    settings, deprecations = _load(cfg, env)
    c = settings.collectors
    assert deprecations == []
    assert c.probe_options("dns", DnsOptions).resolvers == ["10.0.0.2", "10.0.0.3"]
    assert c.probe_options("tcp_ports", TcpPortOptions).high_risk_ports == [21]  # the file's, untouched
    assert HttpSecurityProbe(c).max_path_checks == 9
    assert WebIntegrityProbe(c).options.page_bytes == 20000


def test_old_flat_keys_still_work_with_a_warning_naming_the_new_key(write_file: WriteFile) -> None:
    cfg = write_file(
        "sentinel.yaml",
        """
        collectors:
          high_risk_ports: [23]
          dns_resolvers: [10.20.0.53]
          web_max_path_checks: 5
          discovery_ports: [80]
        """,
    )
    settings, deprecations = _load(cfg)
    c = settings.collectors
    assert [c.model_dump()[name]["high_risk_ports"] for name in ("tcp_ports", "banners", "exposure")] == [[23]] * 3
    assert DnsProbe(c).resolvers() == ["10.20.0.53"]
    assert HttpSecurityProbe(c).max_path_checks == 5
    assert PortDiscoveryProbe(c).ports() == (80,)
    assert (
        f"{cfg}:2: collectors.high_risk_ports is deprecated; use collectors.tcp_ports.high_risk_ports"
        in (deprecations[0])
    )
    assert f"{cfg}:3: collectors.dns_resolvers is deprecated; use collectors.dns.resolvers" in deprecations
    assert f"{cfg}:4: collectors.web_max_path_checks is deprecated; use collectors.http_security.max_path_checks" in (
        deprecations
    )
    assert f"{cfg}:5: collectors.discovery_ports is deprecated; use collectors.port_discovery.ports" in deprecations
    # the environment's old flat form too, and the constructor's
    settings, deprecations = _load(None, {"SENTINEL_COLLECTORS__DNS_RESOLVERS": '["10.0.0.9"]'})
    assert DnsProbe(settings.collectors).resolvers() == ["10.0.0.9"]
    assert deprecations == [
        "environment: SENTINEL_COLLECTORS__DNS_RESOLVERS is deprecated; use SENTINEL_COLLECTORS__DNS__RESOLVERS"
    ]
    with pytest.warns(FutureWarning, match=r"collectors\.ca_file is deprecated; use collectors\.tls\.ca_file"):
        c = CollectorSettings(ca_file="/etc/ca.pem")
    assert (
        c.probe_options("tls", TlsOptions).ca_file
        == c.probe_options("tls_scan", TlsOptions).ca_file
        == Path("/etc/ca.pem")
    )


def test_a_new_key_wins_over_its_old_flat_form_in_the_same_layer_and_layers_keep_their_order(
    write_file: WriteFile,
) -> None:
    cfg = write_file("sentinel.yaml", "collectors:\n  dns_resolvers: [10.0.0.1]\n  dns: {resolvers: [10.0.0.2]}\n")
    settings, _ = _load(cfg)
    assert DnsProbe(settings.collectors).resolvers() == ["10.0.0.2"]
    cfg = write_file("new.yaml", "collectors:\n  dns: {resolvers: [10.0.0.2]}\n")
    settings, _ = _load(cfg, {"SENTINEL_COLLECTORS__DNS_RESOLVERS": '["10.0.0.3"]'})
    assert DnsProbe(settings.collectors).resolvers() == ["10.0.0.3"]  # environment over file, old form or not


def test_relative_paths_are_rebased_by_field_type(write_file: WriteFile, tmp_path: Path) -> None:
    cfg = write_file(
        "conf/sentinel.yaml",
        """
        registry: registry.yaml
        store: data/s.db
        rules: [rules, /abs/rules]
        findings: {exceptions: accepted.yaml}
        web:
          users:
            - {name: bob, role: owner, department: d, token_file: tokens/bob}
        collectors:
          tls: {ca_file: ca.pem}
          tls_scan: {ca_file: /etc/ca.pem}
          web_integrity: {hidden_link_keywords: words/links.txt}
          banners: {vulnerable_versions: vuln.yaml}
          ca_file: old-ca.pem
        """,
    )
    base = tmp_path / "conf"
    settings, _ = _load(cfg)
    c = settings.collectors
    assert settings.registry == base / "registry.yaml" and settings.store == base / "data/s.db"
    assert settings.rules == [base / "rules", Path("/abs/rules")]
    assert settings.findings.exceptions == base / "accepted.yaml"
    assert settings.web.users[0].token_file == base / "tokens/bob"
    assert c.probe_options("tls", TlsOptions).ca_file == base / "ca.pem"  # its own section wins over the old key
    assert c.probe_options("tls_scan", TlsOptions).ca_file == Path("/etc/ca.pem")
    assert WebIntegrityProbe(c).options.hidden_link_keywords == base / "words/links.txt"
    assert c.model_dump()["banners"]["vulnerable_versions"] == base / "vuln.yaml"
    # an old flat path is rebased too, once moved into the probes' sections
    cfg = write_file("conf/old.yaml", "collectors:\n  ca_file: old-ca.pem\n")
    settings, _ = _load(cfg)
    assert settings.collectors.probe_options("tls_scan", TlsOptions).ca_file == base / "old-ca.pem"
    # paths from the environment are left as given (relative to the working directory, as before)
    settings, _ = _load(cfg, {"SENTINEL_COLLECTORS__TLS__CA_FILE": "env-ca.pem"})
    assert settings.collectors.probe_options("tls", TlsOptions).ca_file == Path("env-ca.pem")


def test_the_default_probe_lists_come_from_the_probes_declared_schedule() -> None:
    run_only = {name for name, probe in BUILTIN_PROBES.items() if probe.schedule == "run"}
    opt_in = {name for name, probe in BUILTIN_PROBES.items() if probe.schedule == "opt_in"}
    assert run_only == {"port_discovery"} and opt_in == {"gm_tls"}
    settings = Settings()
    assert settings.collectors.probes == [n for n in BUILTIN_PROBES if n not in run_only | opt_in]
    assert settings.run.extra_probes == ["port_discovery"]
    assert [p.name for p in build_probes(settings.collectors)] == settings.collectors.probes


def test_bad_options_are_reported_at_file_and_line(write_file: WriteFile) -> None:
    cfg = write_file(
        "sentinel.yaml",
        """
        collectors:
          connect_timeout: 1
          dns:
            resolvers: [not-an-ip]
          http_security: {max_path_checks: 0, typo: 1}
          tcp_ports: [21]
          no_such_probe: {x: 1}
          discovery_ports: [70000]
        """,
    )
    problems = _problems(cfg)
    assert f"{cfg}:4: collectors.dns.resolvers: not IP addresses: not-an-ip" in problems
    assert f"{cfg}:5: collectors.http_security.max_path_checks: 0 must be at least 1" in problems
    assert f"{cfg}:5: unknown key 'typo' (in collectors.http_security)" in problems
    assert any(p.startswith(f"{cfg}:6: collectors.tcp_ports:") for p in problems), problems
    assert f"{cfg}:7: unknown key 'no_such_probe' (in collectors)" in problems
    # an old flat key is reported where it is written, under its new name
    assert f"{cfg}:8: collectors.port_discovery.ports: ports must be 1-65535: 70000" in problems
    assert len(problems) == 6


def test_config_show_prints_each_probes_options_and_a_bad_option_exits_2(write_file: WriteFile, tmp_path: Path) -> None:
    cfg = write_file(
        "sentinel.yaml",
        f"""
        store: {tmp_path / "s.db"}
        collectors:
          dns: {{resolvers: [10.20.0.53]}}
        serve: {{metrics_token: hunter2}}
        """,
    )
    code = "import sys; from sentinel.cli.main import main; sys.exit(main(sys.argv[1:]))"
    run = [sys.executable, "-c", code, "config", "show", "--format", "json", "--config"]
    done = subprocess.run([*run, str(cfg)], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    collectors = shown["collectors"]
    assert set(BUILTIN_PROBES) <= set(collectors)
    assert collectors["dns"] == {"resolvers": ["10.20.0.53"]}
    assert collectors["tcp_ports"]["high_risk_ports"] == list(HIGH_RISK_PORTS)
    assert collectors["probes"] == Settings().collectors.probes
    assert shown["serve"]["metrics_token"] != "hunter2" and "hunter2" not in done.stdout
    bad = write_file("bad.yaml", "collectors:\n  dns:\n    resolvers: [nope]\n")
    done = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 2 and f"{bad}:3: collectors.dns.resolvers: not IP addresses: nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_reading_settings_does_not_load_the_collectors_or_the_sinks() -> None:
    code = (
        "import sys, sentinel.config.settings; "
        "print(sorted(m for m in sys.modules if m.startswith(('sentinel.collectors', 'sentinel.sinks', "
        "'sentinel.store', 'sentinel.engine'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_the_deprecated_elasticsearch_section_is_still_checked_at_file_and_line(write_file: WriteFile) -> None:
    cfg = write_file("sentinel.yaml", 'elasticsearch:\n  url: "https://es:9200"\n  bogus: 1\n')
    assert _problems(cfg) == [f"{cfg}:3: unknown key 'bogus' (in elasticsearch)"]
    good = write_file("good.yaml", 'elasticsearch:\n  url: "https://es:9200"\n')
    settings, _ = _load(good)
    assert settings.elasticsearch == {"url": "https://es:9200"}
