"""Findings and observations as the store holds them, for the sinks' tests (what each sink encodes and ships)."""

from __future__ import annotations

from datetime import UTC, datetime

from sentinel.models import Finding, FindingStatus, Observation, Severity

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def make_finding(i: int, status: FindingStatus = FindingStatus.OPEN, when: datetime = T0) -> Finding:
    """The i-th of many expired-certificate findings, over seven systems; last seen `when`."""
    return Finding(
        id=f"{i:064x}",
        rule_id="tls_cert_not_expired",
        title="TLS certificate expired",
        severity=Severity.CRITICAL,
        category="crypto",
        system_id=f"sys-{i % 7}",
        target=f"host{i}.example.gov.cn:443",
        status=status,
        first_seen=T0,
        last_seen=when,
        occurrences=1,
        evidence={"probe": "tls", "cert.days_to_expiry": -3.5, "cert.not_after": "2026-11-20T00:00:00+00:00"},
        controls=["mlps:8.1.4.2 a)"],
        remediation="Renew the certificate.",
    )


def make_observation(i: int) -> Observation:
    """The i-th of many TLS observations, over the same seven systems."""
    return Observation(
        kind="tls",
        system_id=f"sys-{i % 7}",
        target=f"host{i}.example.gov.cn:443",
        observed_at=T0,
        probe="tls",
        data={"tls.protocol": "TLSv1.3", "cert.days_to_expiry": 40},
    )
