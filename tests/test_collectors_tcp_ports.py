"""The tcp_ports probe against a real loopback listener: open, closed and declared ports, and the host summary."""

from __future__ import annotations

import asyncio

from sentinel.collectors.tcp_ports import TcpPortProbe
from sentinel.demo.estate import free_port
from tests.support.probe_runs import IP, run_probe, system


async def test_tcp_ports_open_closed_and_declared() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), IP, 0)
    port = server.sockets[0].getsockname()[1]
    closed = free_port(IP)
    try:
        obs = await run_probe(TcpPortProbe, system({"host": IP, "ports": [port, closed]}))
    finally:
        server.close()
    ports = {o.data["port"]: o for o in obs if o.kind == "port"}
    assert ports[port].data["state"] == "open" and ports[port].data["declared_by"] == "host"
    assert ports[closed].data["state"] == "closed"
    assert ports[3389].data["high_risk"] and ports[3389].data["state"] == "closed"
    (host,) = [o for o in obs if o.kind == "host"]
    assert host.data["reachable"] is True and host.data["open_ports"] == [port]
