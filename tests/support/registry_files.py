"""Registry files for the loader's and the registry commands' tests: one good (the issue's shape) and one with a
mistake of each kind, every one at a known line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

GOOD = """
scope:
  allow: ["10.20.0.0/16", "2001:db8:20::/48", "gov.example.cn"]
systems:
  - id: city-portal
    name: 市政务服务门户
    owner: {department: 市大数据管理中心, contact: 张工, email: ops@example.cn}
    tier: city
    mlps_level: 3
    cii: true
    endpoints:
      - url: https://portal.gov.example.cn/
      - host: 10.20.1.5
        ports: [22, 443]
    tags: [e-gov]
"""

BAD = """
scope:
  allow: ["10.20.0.0/16", "10.300.0.0/16", "gov.example.cn"]
systems:
  - id: city-portal
    name: Portal
    owner: {department: IT}
    tier: city
    mlps_level: 3
    endpoints:
      - url: https://portal.gov.example.cn/
  - id: city-portal
    name: Portal again
    owner: {department: IT}
    tier: town
    mlps_level: 7
    endpoints:
      - url: ftp://portal.gov.example.cn/
  - id: outside
    name: Outside
    owner: {department: IT, colour: red}
    tier: district
    mlps_level: 2
    endpoints:
      - host: 192.0.2.10
        ports: [22]
"""


def system_doc(
    system_id: str,
    name: str,
    endpoints: list[dict[str, Any]],
    mlps_level: int = 2,
    tier: str = "city",
    department: str = "IT",
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """One system, as a registry file holds it (`System.model_validate` makes it a model)."""
    doc: dict[str, Any] = {
        "id": system_id,
        "name": name,
        "owner": {"department": department},
        "tier": tier,
        "mlps_level": mlps_level,
        "endpoints": endpoints,
    }
    if tags is not None:
        doc["tags"] = tags
    return doc


def write_registry_doc(path: Path, allow: list[str], *systems: dict[str, Any]) -> Path:
    """A registry file of `systems` within a scope of `allow`."""
    path.write_text(yaml.safe_dump({"scope": {"allow": allow}, "systems": list(systems)}), encoding="utf-8")
    return path
