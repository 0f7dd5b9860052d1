"""ECS mapping of findings and observations."""

from __future__ import annotations

from sentinel.models import Finding, Severity
from sentinel.registry.models import System
from sentinel.sinks.elasticsearch.documents import (
    finding_document,
    observation_document,
    observer,
    target_fields,
)
from tests.support.findings import make_finding, make_observation

SYSTEM = System.model_validate(
    {
        "id": "city-portal",
        "name": "市政府门户网站",
        "owner": {"department": "市大数据局"},
        "tier": "city",
        "mlps_level": 3,
        "cii": True,
        "endpoints": [{"url": "https://portal.example.gov.cn/"}],
        "district": "鼓楼区",
    }
)


def test_finding_is_an_ecs_state_document_with_registry_metadata() -> None:
    f = make_finding(3)
    doc = finding_document(f, SYSTEM, observer())
    assert doc["event"]["kind"] == "state"
    assert doc["event"]["category"] == ["vulnerability", "configuration"]
    assert doc["event"]["severity"] == 5
    assert doc["rule"]["id"] == doc["vulnerability"]["id"] == "tls_cert_not_expired"
    assert doc["vulnerability"]["severity"] == "Critical"
    assert doc["observer"]["product"] == "Sentinel"
    assert doc["destination"] == {"address": "host3.example.gov.cn", "domain": "host3.example.gov.cn", "port": 443}
    assert doc["tls"]["server"]["x509"]["not_after"] == "2026-11-20T00:00:00+00:00"
    assert doc["labels"] == {
        "site": "default",
        "vantage": "internal",
        "system_id": "city-portal",
        "tier": "city",
        "department": "市大数据局",
        "mlps_level": "3",
        "district": "鼓楼区",
    }
    assert doc["sentinel"]["system"]["cii"] is True
    assert (doc["sentinel"]["site"], doc["sentinel"]["vantage"], doc["observer"]["name"]) == (
        "default",
        "internal",
        "default/internal",
    )
    assert doc["sentinel"]["finding"]["status"] == "open"
    assert doc["sentinel"]["evidence"]["cert.days_to_expiry"] == -3.5


def test_traffic_detection_is_an_alert() -> None:
    f: Finding = make_finding(1)
    f.rule_id, f.category, f.severity = "traffic_portscan_syn", "traffic", Severity.HIGH
    doc = finding_document(f, None, observer())
    assert doc["event"]["kind"] == "alert"
    assert "intrusion_detection" in doc["event"]["category"]
    assert doc["labels"] == {"site": "default", "vantage": "internal", "system_id": f.system_id}


def test_targets_map_to_destination_url_and_network() -> None:
    assert target_fields("https://portal.example.gov.cn/login")["url"] == {
        "full": "https://portal.example.gov.cn/login",
        "original": "https://portal.example.gov.cn/login",
        "scheme": "https",
        "domain": "portal.example.gov.cn",
        "path": "/login",
        "port": 443,
    }
    port = target_fields("10.1.2.3:3306/tcp")
    assert port["destination"] == {"address": "10.1.2.3", "ip": "10.1.2.3", "port": 3306}
    assert port["network"] == {"transport": "tcp"}
    assert target_fields("[2001:db8::1]:443")["destination"] == {
        "address": "2001:db8::1",
        "ip": "2001:db8::1",
        "port": 443,
    }
    assert target_fields("mail.example.gov.cn")["destination"] == {
        "address": "mail.example.gov.cn",
        "domain": "mail.example.gov.cn",
    }


def test_observation_document_keeps_data_flattened_and_bounded() -> None:
    doc = observation_document(make_observation(2), SYSTEM, observer())
    assert doc["event"]["kind"] == "event"
    assert doc["event"]["dataset"] == "sentinel.observation.tls"
    assert doc["tls"] == {"version_protocol": "tls", "version": "1.3"}
    assert doc["sentinel"]["observation"]["data"] == {"tls.protocol": "TLSv1.3", "cert.days_to_expiry": 40}
