"""A listener script for test hosts in namespaces: `python -c LISTENER PORT...` listens on each port over IPv4 and
IPv6, prints `ready` and stays up for two minutes."""

from __future__ import annotations

LISTENER = """
import socket, sys, time
socks = []
for port in map(int, sys.argv[1:]):
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port)); s.listen(64); socks.append(s)
print("ready", flush=True)
time.sleep(120)
"""
