"""Redis (RESP) and Memcached (ASCII protocol) answers to read-only commands: PING, INFO, version, stats."""

from __future__ import annotations

from dataclasses import dataclass

from sentinel.collectors.protocols import ProtocolError

REDIS_PING = b"PING\r\n"
REDIS_INFO = b"INFO server\r\n"
MEMCACHED_VERSION = b"version\r\n"
MEMCACHED_STATS = b"stats\r\n"
#: stats worth keeping as evidence (the full list is ~80 lines)
MEMCACHED_STAT_KEYS = ("uptime", "curr_connections", "curr_items", "total_items", "bytes", "limit_maxbytes", "threads")
_MAX_INFO = 65_536


@dataclass(frozen=True, slots=True)
class RedisReply:
    kind: str  # "simple" (+), "error" (-), "bulk" ($), "other"
    text: str


def redis_line_complete(raw: bytes) -> bool:
    return b"\r\n" in raw


def redis_bulk_complete(raw: bytes) -> bool:
    """A `$<len>\\r\\n<payload>\\r\\n` reply is complete (or is an error/simple line)."""
    if not raw.startswith(b"$"):
        return b"\r\n" in raw
    head, sep, _ = raw.partition(b"\r\n")
    if not sep:
        return False
    try:
        length = int(head[1:])
    except ValueError:
        return True  # malformed: stop reading, the parser will say so
    return length < 0 or len(raw) >= len(head) + 2 + min(length, _MAX_INFO) + 2 or len(raw) >= _MAX_INFO


def parse_redis_reply(raw: bytes) -> RedisReply:
    if not raw:
        raise ProtocolError("no answer")
    first, sep, rest = raw.partition(b"\r\n")
    if not sep:
        raise ProtocolError("reply line not terminated")
    marker, body = first[:1], first[1:].decode("utf-8", "replace")
    if marker == b"+":
        return RedisReply("simple", body[:256])
    if marker == b"-":
        return RedisReply("error", body[:256])
    if marker == b"$":
        try:
            length = int(body)
        except ValueError:
            raise ProtocolError(f"bad bulk length {body[:20]!r}") from None
        if length < 0:
            return RedisReply("bulk", "")
        return RedisReply("bulk", rest[: min(length, _MAX_INFO)].decode("utf-8", "replace"))
    raise ProtocolError(f"not a RESP reply (starts with {first[:16]!r})")


def parse_redis_info(text: str) -> dict[str, str]:
    """`key:value` lines of INFO, bounded."""
    out: dict[str, str] = {}
    for line in text.splitlines()[:400]:
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            out[key.strip()[:64]] = value.strip()[:128]
    return out


def memcached_line_complete(raw: bytes) -> bool:
    return raw.endswith(b"\r\n")


def memcached_stats_complete(raw: bytes) -> bool:
    return raw.endswith(b"END\r\n") or raw.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR"))


def parse_memcached_version(raw: bytes) -> str | None:
    """`VERSION 1.6.18` → '1.6.18'; None for an error or an unexpected line."""
    line = raw.split(b"\r\n", 1)[0].decode("ascii", "replace")
    if line.startswith("VERSION "):
        return line[len("VERSION ") :].strip()[:64] or None
    return None


def parse_memcached_stats(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.decode("ascii", "replace").split("\r\n")[:200]:
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == "STAT" and parts[1] in MEMCACHED_STAT_KEYS:
            out[parts[1]] = parts[2][:64]
    return out
