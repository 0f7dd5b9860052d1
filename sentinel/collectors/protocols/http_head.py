"""A `HEAD /` request and the product/version in its answer's `Server` / `X-Powered-By` headers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sentinel.collectors.protocols import ProtocolError

MAX_HEAD_BYTES = 8192
_STATUS = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})")
#: `nginx/1.18.0`, `Apache/2.4.49 (Unix)`, `Microsoft-IIS/10.0`, `PHP/7.4.3`
_PRODUCT = re.compile(r"^(?P<p>[A-Za-z][A-Za-z0-9._-]{0,40})/(?P<v>\d+(?:\.\d+)*[a-z0-9]*)")


@dataclass(frozen=True, slots=True)
class HeadAnswer:
    status: int
    server: str | None
    powered_by: str | None


def head_request(host: str, user_agent: str) -> bytes:
    authority = f"[{host}]" if ":" in host else host
    return (
        f"HEAD / HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii", "replace")


def head_complete(raw: bytes) -> bool:
    return b"\r\n\r\n" in raw or b"\n\n" in raw


def parse_head(raw: bytes) -> HeadAnswer:
    match = _STATUS.match(raw)
    if not match:
        raise ProtocolError(f"not an HTTP answer (starts with {raw[:16]!r})")
    headers: dict[str, str] = {}
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\n")[1:64]:
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip()[:256])
    return HeadAnswer(int(match.group(1)), headers.get("server"), headers.get("x-powered-by"))


def product_version(header: str | None) -> tuple[str | None, str | None]:
    """(product, version) from the first token of a Server/X-Powered-By value; version None if not shown."""
    if not header:
        return None, None
    match = _PRODUCT.match(header)
    if match:
        return match.group("p").lower(), match.group("v")
    token = header.split(" ", 1)[0].split("/", 1)[0].lower()[:40]
    return token or None, None
