"""How a host and port are written in observation targets and messages: one formatter for the whole flow.

IPv6 literals are bracketed (`[::1]:2222/tcp`): written bare, `::1:2222` is itself a valid address, so a
target like that would be ambiguous to a reader, to the exceptions file and to the web view's links.
"""

from __future__ import annotations


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 literal in brackets."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port_target(host: str, port: int, proto: str = "tcp") -> str:
    """The target of one port: `host:port/tcp` (or `/udp`)."""
    return f"{host_port(host, port)}/{proto}"
