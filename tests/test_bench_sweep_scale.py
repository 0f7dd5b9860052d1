"""The scale benchmark's estate builder and sweep, at a tiny size, so CI proves `bench.sweep_scale` still works."""

from __future__ import annotations

from pathlib import Path

from bench.sweep_scale import FILTERED_PORTS, build_estate, sentinel_sweep
from tests.netns import netns_lab, require_tool


async def test_tiny_estate_sweeps_as_built(tmp_path: Path) -> None:
    require_tool("nft")
    with netns_lab() as lab:
        estate = build_estate(lab, tmp_path, 20)
        assert len(estate.addresses) == 20 and estate.down and estate.filtered
        took, stats = await sentinel_sweep(
            estate, ["icmp", "tcp_ports", "http", "tls"], tmp_path / "s.db", connect_timeout=0.5, tls_timeout=1.0
        )
    up = estate.up
    https_up = [a for i, a in enumerate(estate.addresses) if i % 2 and a in up]
    ports_per_host = stats["port_probes"] // len(estate.addresses)
    assert stats["methods"] == ["icmp-echo", "tcp-syn"]
    assert stats["open"] == 3 * len(up)  # 22, 3306 and the URL's port
    assert stats["filtered"] == ports_per_host * len(estate.down) + len(FILTERED_PORTS) * len(estate.filtered)
    assert stats["icmp_up"] == len(up)
    assert stats["http_ok"] == len(up)
    assert stats["tls_ok"] == len(https_up)
    assert took < 30
