"""Keep secrets out of logs and `config show`: credentials, query strings and token-like path segments of URLs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_TOKENISH = re.compile(r"^[A-Za-z0-9_\-]{16,}$")


def redact_url(url: str) -> str:
    """https://user:pw@host/hook/3f2a…?key=x → https://********@host/hook/***?***  (robot webhooks keep their key in
    the path or the query, so both are secrets)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.hostname or ""
    netloc = ("********@" if "@" in parts.netloc else "") + (f"[{host}]" if ":" in host else host)
    if parts.port:
        netloc += f":{parts.port}"
    path = "/".join("***" if _TOKENISH.match(seg) else seg for seg in parts.path.split("/"))
    return urlunsplit((parts.scheme, netloc, path, "***" if parts.query else "", ""))
