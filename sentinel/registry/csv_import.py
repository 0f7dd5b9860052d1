"""Turn the spreadsheet owners keep (CSV, English or Chinese headers) into registry YAML.

The CSV is streamed: one row at a time is read, validated with the registry's own models and written
to a spooled temporary file, so memory stays flat whatever the file size (a 50 MB export used to
grow past 8 GB). Limits on bytes and rows refuse runaway inputs with a message naming the flag.
"""

from __future__ import annotations

import codecs
import csv
import io
import ipaddress
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from pydantic import ValidationError

from sentinel.errors import InputError, Problem
from sentinel.registry.loader import build_registry
from sentinel.registry.models import System, is_ip
from sentinel.registry.scope import Scope
from sentinel.yamlio import validation_problems

#: defaults of `registry import --max-bytes / --max-rows`: far above a city's ~1,400 systems
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ROWS = 100_000
#: problems kept before the rest are only counted (a broken export could otherwise hold millions)
MAX_PROBLEMS = 500
#: rows between two progress callbacks
PROGRESS_EVERY = 2_000
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

#: a string that YAML reads back as the same string when written plain: starts with a letter, holds no
#: indicator that could start a comment, a mapping value, a flow collection, an alias or a tag
_TEXT = "\\u00a0-\\u2027\\u202a-\\ud7ff\\ue000-\\ufefe\\uff00-\\ufffd"  # printable non-ASCII, no BOM or line separators
_PLAIN = re.compile(rf"[A-Za-z{_TEXT}](?:[\w.@/+(){_TEXT}-]|:(?=[^ ])| (?=[^ #]))*")
#: plain words a YAML 1.1 loader would turn into booleans or null
_RESERVED = frozenset({"yes", "no", "true", "false", "on", "off", "null", "y", "n"})
#: characters YAML forbids raw in a file; escaped inside double quotes instead
_UNPRINTABLE = re.compile(
    "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\x85\ufeff\u2028\u2029]"
)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    quoted = json.dumps(text, ensure_ascii=False)  # JSON escapes are a subset of YAML double-quoted ones
    return _UNPRINTABLE.sub(
        lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) < 0x10000 else f"\\U{ord(m.group()):08x}", quoted
    )


def _emit(value: Any, indent: str, out: list[str]) -> None:
    """Block YAML for the dicts, lists and scalars of one system (what yaml.dump writes, ~10x faster)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                out.append(f"{indent}{_scalar(key)}:\n")
                _emit(item, indent + "  " if isinstance(item, dict) else indent, out)
            else:
                out.append(f"{indent}{_scalar(key)}: {_value(item)}\n")
    else:
        for item in value:
            if isinstance(item, dict | list) and item:
                inner: list[str] = []
                _emit(item, indent + "  ", inner)
                inner[0] = indent + "- " + inner[0][len(indent) + 2 :]
                out.extend(inner)
            else:
                out.append(f"{indent}- {_value(item)}\n")


def _value(item: Any) -> str:
    if isinstance(item, dict | list):
        return "{}" if isinstance(item, dict) else "[]"
    return _scalar(item)


def emit_item(system: dict[str, Any]) -> str:
    """One system as an item of the registry's `systems:` list."""
    out: list[str] = []
    _emit([system], "", out)
    return "".join(out)


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


@dataclass(frozen=True)
class ImportLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_rows: int = DEFAULT_MAX_ROWS


@dataclass(frozen=True)
class ImportResult:
    systems: int
    output_bytes: int


#: (bytes read so far, rows read so far); called every PROGRESS_EVERY rows and once at the end
ProgressCallback = Callable[[int, int], None]


class _Counting(io.RawIOBase):
    """A binary file that counts the bytes read through it (for progress and the byte limit)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def read_so_far(self) -> int:
        return self.count

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        return int(n or 0)


class _Problems:
    """Every problem up to MAX_PROBLEMS, then only a count."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.kept: list[Problem] = []
        self.dropped = 0

    def add(self, problem: Problem) -> None:
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(problem)
        else:
            self.dropped += 1

    def all(self) -> list[Problem]:
        extra = [Problem(self.filename, None, f"... and {self.dropped} more problems")] if self.dropped else []
        return [*self.kept, *extra]


def _header_mapping(fieldnames: list[str], filename: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    problems: list[Problem] = []
    for header in fieldnames:
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
    return mapping


def _convert(
    lines: Iterator[str],
    filename: str,
    scope: list[str] | None,
    limits: ImportLimits,
    systems_out: IO[str],
    progress: ProgressCallback | None = None,
    bytes_read: Callable[[], int] = lambda: 0,
) -> tuple[list[str], int]:
    """Validate each CSV row and write it to `systems_out` as YAML list items; return (the scope's allow list,
    the number of systems).
    Raises InputError with every problem (CSV lines) if anything is wrong."""
    reader = csv.DictReader(lines)
    problems = _Problems(filename)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise InputError([Problem(filename, 1, f"not a readable CSV header: {exc}")]) from None
    if not fieldnames:
        raise InputError([Problem(filename, 1, "empty CSV: no header row")])
    mapping = _header_mapping(list(fieldnames), filename)
    given = Scope(allow=scope) if scope else None
    seen: dict[str, int] = {}
    inferred: dict[str, None] = {}  # insertion-ordered set
    rows = written = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # line_num counts the lines of complete records; the broken one starts on the next line
            problems.add(Problem(filename, reader.line_num + 1, f"CSV error: {exc}"))
            break  # the reader cannot resynchronise reliably after a malformed record
        line = reader.line_num
        rows += 1
        if rows > limits.max_rows:
            raise InputError(
                [
                    *problems.all(),
                    Problem(
                        filename,
                        line,
                        f"more than {limits.max_rows:,} rows; refusing to import (raise --max-rows if you mean it)",
                    ),
                ]
            )
        if bytes_read() > limits.max_bytes:
            raise InputError([Problem(filename, line, f"more than {limits.max_bytes:,} bytes read; raise --max-bytes")])
        if progress is not None and rows % PROGRESS_EVERY == 0:
            progress(bytes_read(), rows)
        values = {mapping[k]: (v or "").strip() for k, v in row.items() if k in mapping and isinstance(v, str)}
        if not any(values.values()):
            continue
        row_problems: list[Problem] = []
        system = _row_to_system(values, line, filename, row_problems)
        for problem in row_problems:
            problems.add(problem)
        try:
            model = System.model_validate(system)
        except ValidationError as exc:
            for problem in validation_problems(exc, system, filename):
                problems.add(Problem(filename, line, problem.message))
            model = None
        sid = str(system.get("id") or "")
        if sid in seen:
            problems.add(
                Problem(filename, line, f"duplicate system id '{sid}' (first defined at {filename}:{seen[sid]})")
            )
        elif sid:
            seen[sid] = line
        if model is None or row_problems:
            continue
        for endpoint in model.endpoints:
            host = endpoint.hostname
            if given is not None and not given.allows_host(host):
                problems.add(
                    Problem(
                        filename, line, f"system '{model.id}': endpoint host '{host}' is outside the declared scope"
                    )
                )
            elif given is None:
                inferred[str(ipaddress.ip_network(host)) if is_ip(host) else host] = None
        if not problems.kept:  # once anything is wrong, nothing will be written: stop spending time on YAML
            systems_out.write(emit_item(system))
            written += 1
    if progress is not None:
        progress(bytes_read(), rows)
    allow = list(scope) if scope else list(inferred)
    # the scope itself is checked by the registry loader's own rules (syntax, width, emptiness)
    try:
        build_registry([(filename, {"scope": {"allow": allow}, "systems": []})])
    except InputError as exc:
        for problem in exc.problems:
            problems.add(Problem(filename, None, problem.message))
    if problems.kept:
        raise InputError(problems.all())
    return allow, written


def _assemble(allow: list[str], systems: IO[str], out: IO[str]) -> int:
    """Write the registry document (scope first, then the systems) to `out`; return its size in bytes."""
    head = yaml.dump({"scope": {"allow": allow}}, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=120)
    size = len(head.encode())
    out.write(head)
    systems.seek(0)
    first = systems.read(1)
    out.write("systems:\n" if first else "systems: []\n")
    size += len("systems:\n")
    if first:
        out.write(first)
        size += len(first.encode())
        while chunk := systems.read(1 << 16):
            out.write(chunk)
            size += len(chunk.encode())
    return size


def csv_to_registry(
    text: str, filename: str, scope: list[str] | None = None, limits: ImportLimits | None = None
) -> str:
    """Registry YAML for the CSV text; validated with the same rules as any registry (errors name CSV lines)."""
    with tempfile.SpooledTemporaryFile(mode="w+", encoding="utf-8", max_size=1 << 20) as systems:
        allow, _ = _convert(
            iter(io.StringIO(text.lstrip("\ufeff"), newline="")), filename, scope, limits or ImportLimits(), systems
        )
        out = io.StringIO()
        _assemble(allow, systems, out)
    return out.getvalue()


def import_csv_to(
    path: Path,
    out: IO[str],
    scope: list[str] | None = None,
    limits: ImportLimits | None = None,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Stream the CSV at `path` into registry YAML on `out`; nothing is written unless every row is valid.

    UTF-8 first; a file that is not is read again as GB18030 (what Chinese Excel saves)."""
    limits = limits or ImportLimits()
    filename = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError([Problem(filename, None, f"cannot read file: {exc.strerror or exc}")]) from None
    if size > limits.max_bytes:
        raise InputError(
            [Problem(filename, None, f"file is {size:,} bytes, over the {limits.max_bytes:,}-byte limit (--max-bytes)")]
        )
    with tempfile.SpooledTemporaryFile(mode="w+", encoding="utf-8", max_size=1 << 20) as systems:
        allow: list[str] | None = None
        count = 0
        for encoding in ("utf-8-sig", "gb18030"):
            systems.seek(0)
            systems.truncate()
            try:
                with path.open("rb") as raw:
                    counting = _Counting(raw)
                    text = io.TextIOWrapper(io.BufferedReader(counting), encoding=encoding, newline="")
                    allow, count = _convert(
                        iter(text), filename, scope, limits, systems, progress, counting.read_so_far
                    )
                break
            except UnicodeDecodeError as exc:
                if codecs.lookup(encoding).name == "gb18030":
                    raise InputError([Problem(filename, None, f"not UTF-8 or GB18030 text: {exc.reason}")]) from None
            except OSError as exc:
                raise InputError([Problem(filename, None, f"cannot read file: {exc.strerror or exc}")]) from None
        assert allow is not None
        output_bytes = _assemble(allow, systems, out)
    return ImportResult(systems=count, output_bytes=output_bytes)


def import_csv(path: Path, scope: list[str] | None = None, limits: ImportLimits | None = None) -> str:
    out = io.StringIO()
    import_csv_to(path, out, scope, limits)
    return out.getvalue()
