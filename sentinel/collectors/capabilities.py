"""Whether this process may open raw sockets (root or CAP_NET_RAW): decides SYN versus connect scanning."""

from __future__ import annotations

import contextlib
import socket
from functools import cache

CAP_NET_RAW = 13


class RawSocketsUnavailableError(PermissionError):
    """This process may not open raw sockets (it needs root or CAP_NET_RAW)."""


def effective_capabilities(status_file: str = "/proc/self/status") -> int | None:
    """The CapEff bit mask of this process, or None where /proc does not tell."""
    try:
        with open(status_file, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


@cache
def raw_socket_rights() -> bool:
    """True when a raw socket can really be opened (the capability bit alone can be masked by seccomp)."""
    caps = effective_capabilities()
    if caps is not None and not caps & (1 << CAP_NET_RAW):
        return False
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        sock.close()
    return True
