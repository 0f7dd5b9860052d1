"""Turn the spreadsheet owners keep (CSV, English or Chinese headers) into registry YAML."""

from __future__ import annotations

import csv
import io
import ipaddress
from pathlib import Path
from typing import Any

import yaml

from sentinel.errors import InputError, Problem
from sentinel.registry.loader import build_registry
from sentinel.registry.models import is_ip
from sentinel.yamlio import load_yaml_text

#: column name (lowercased) -> registry field; Chinese headers as found in 备案 spreadsheets
HEADERS = {
    "id": "id",
    "system_id": "id",
    "系统编号": "id",
    "编号": "id",
    "name": "name",
    "系统名称": "name",
    "名称": "name",
    "department": "department",
    "owner": "department",
    "责任部门": "department",
    "主管部门": "department",
    "contact": "contact",
    "联系人": "contact",
    "负责人": "contact",
    "email": "email",
    "邮箱": "email",
    "电子邮箱": "email",
    "phone": "phone",
    "电话": "phone",
    "联系电话": "phone",
    "tier": "tier",
    "层级": "tier",
    "级别层级": "tier",
    "mlps_level": "mlps_level",
    "level": "mlps_level",
    "等保级别": "mlps_level",
    "等级": "mlps_level",
    "cii": "cii",
    "关键信息基础设施": "cii",
    "urls": "urls",
    "url": "urls",
    "网址": "urls",
    "域名": "urls",
    "hosts": "hosts",
    "host": "hosts",
    "ip": "hosts",
    "ip地址": "hosts",
    "地址": "hosts",
    "ports": "ports",
    "端口": "ports",
    "tags": "tags",
    "标签": "tags",
    "district": "district",
    "区县": "district",
}
TIERS = {
    "city": "city",
    "市": "city",
    "市级": "city",
    "district": "district",
    "区": "district",
    "区级": "district",
    "区县": "district",
    "县": "district",
    "street": "street",
    "街道": "street",
    "乡镇": "street",
    "街镇": "street",
}
TRUE = {"1", "true", "yes", "y", "是", "√"}
FALSE = {"", "0", "false", "no", "n", "否"}
LEVELS = {"一级": 1, "二级": 2, "三级": 3, "四级": 4, "五级": 5, "第一级": 1, "第二级": 2, "第三级": 3, "第四级": 4}


def _split(value: str) -> list[str]:
    for sep in ("；", "，", "、", "|", ",", "\n"):
        value = value.replace(sep, ";")
    return [v.strip() for v in value.split(";") if v.strip()]


def _row_to_system(row: dict[str, str], line: int, filename: str, problems: list[Problem]) -> dict[str, Any]:
    def bad(msg: str) -> None:
        problems.append(Problem(filename, line, msg))

    system: dict[str, Any] = {"id": row.get("id", ""), "name": row.get("name", "")}
    owner = {k: row[k] for k in ("department", "contact", "email", "phone") if row.get(k)}
    system["owner"] = owner
    tier = row.get("tier", "").strip().lower()
    system["tier"] = TIERS.get(tier, tier)
    level = row.get("mlps_level", "").strip()
    if level in LEVELS:
        system["mlps_level"] = LEVELS[level]
    elif level.isdigit():
        system["mlps_level"] = int(level)
    else:
        bad(f"mlps_level '{level}' is not a level 1-5")
    cii = row.get("cii", "").strip().lower()
    if cii in TRUE:
        system["cii"] = True
    elif cii in FALSE:
        system["cii"] = False
    else:
        bad(f"cii '{cii}' is not yes/no")
    ports: list[int] = []
    for p in _split(row.get("ports", "")):
        if p.isdigit():
            ports.append(int(p))
        else:
            bad(f"port '{p}' is not a number")
    endpoints: list[dict[str, Any]] = [{"url": u} for u in _split(row.get("urls", ""))]
    endpoints += [{"host": h, "ports": ports} if ports else {"host": h} for h in _split(row.get("hosts", ""))]
    system["endpoints"] = endpoints
    if tags := _split(row.get("tags", "")):
        system["tags"] = tags
    if row.get("district"):
        system["district"] = row["district"]
    return system


def csv_to_registry(text: str, filename: str, scope: list[str] | None = None) -> str:
    """Registry YAML for the CSV text; validated with the same rules as any registry (errors name CSV lines)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        raise InputError([Problem(filename, 1, "empty CSV: no header row")])
    mapping: dict[str, str] = {}
    problems: list[Problem] = []
    for header in reader.fieldnames:
        key = HEADERS.get(header.strip().lower())
        if key is None:
            problems.append(
                Problem(filename, 1, f"unknown column '{header}' (known: {', '.join(sorted(set(HEADERS.values())))})")
            )
        else:
            mapping[header] = key
    missing = {"id", "name", "department", "tier", "mlps_level"} - set(mapping.values())
    if missing:
        problems.append(Problem(filename, 1, f"missing column(s): {', '.join(sorted(missing))}"))
    if problems:
        raise InputError(problems)
    systems: list[dict[str, Any]] = []
    lines: list[int] = []
    for row in reader:
        line = reader.line_num
        values = {mapping[k]: (v or "").strip() for k, v in row.items() if k in mapping}
        if not any(values.values()):
            continue
        systems.append(_row_to_system(values, line, filename, problems))
        lines.append(line)
    allow = scope or _inferred_scope(systems)
    doc = {"scope": {"allow": allow}, "systems": systems}
    out = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120)
    # Validate through the real loader, then map YAML lines back to CSV lines.
    try:
        build_registry([(filename, load_yaml_text(out, filename))])
    except InputError as exc:
        for p in exc.problems:
            problems.append(Problem(filename, _csv_line(out, p.line, lines), p.message))
    if problems:
        raise InputError(problems)
    return out


def _csv_line(yaml_text: str, yaml_line: int | None, csv_lines: list[int]) -> int | None:
    if yaml_line is None:
        return None
    starts = [i + 1 for i, ln in enumerate(yaml_text.splitlines()) if ln.startswith("- id:")]
    index = sum(1 for s in starts if s <= yaml_line) - 1
    return csv_lines[index] if 0 <= index < len(csv_lines) else 1


def _inferred_scope(systems: list[dict[str, Any]]) -> list[str]:
    """The narrowest scope: each listed address as a host route, each URL host name exactly."""
    from urllib.parse import urlsplit

    allow: list[str] = []
    for s in systems:
        for ep in s.get("endpoints", []):
            host = ep.get("host") or urlsplit(ep.get("url", "")).hostname or ""
            if not host:
                continue
            entry = str(ipaddress.ip_network(host)) if is_ip(host) else host
            if entry not in allow:
                allow.append(entry)
    return allow


def import_csv(path: Path, scope: list[str] | None = None) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = path.read_text(encoding="gb18030")  # spreadsheets saved by Chinese Excel
        except UnicodeDecodeError as exc:
            raise InputError([Problem(str(path), None, f"not UTF-8 or GB18030 text: {exc.reason}")]) from None
    except OSError as exc:
        raise InputError([Problem(str(path), None, f"cannot read file: {exc.strerror or exc}")]) from None
    return csv_to_registry(text, str(path), scope)
