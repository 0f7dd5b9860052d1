"""Threat-intelligence lists: plain text files, one address, CIDR or domain per line (`#` comments).

A domain entry matches itself and every name under it. Lists live in `rules/data/threat_intel/`
(updated by replacing the files); the list name reported in evidence is the file's stem.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sentinel.errors import InputError, Problem
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import HOSTNAME

I64 = npt.NDArray[np.int64]


def shipped_intel_dir() -> Path:
    return shipped_rules_dir() / "data" / "threat_intel"


@dataclass
class ThreatIntel:
    addresses: dict[str, str] = field(default_factory=dict)  # exact address text → list name
    v4_ranges: list[tuple[int, int, str]] = field(default_factory=list)
    v6_networks: list[tuple[ipaddress.IPv6Network, str]] = field(default_factory=list)
    domains: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.addresses) + len(self.v4_ranges) + len(self.v6_networks) + len(self.domains)

    def domain_list(self, name: str) -> tuple[str, str] | None:
        """(listed domain, list name) when `name` or a parent of it is listed."""
        labels = name.lower().rstrip(".").split(".")
        for i in range(len(labels) - 1):
            suffix = ".".join(labels[i:])
            listed = self.domains.get(suffix)
            if listed is not None:
                return suffix, listed
        return None


def load_intel(paths: list[Path]) -> ThreatIntel:
    """Every list under the given files/folders (*.txt); an InputError names each bad line."""
    intel = ThreatIntel()
    problems: list[Problem] = []
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.txt")))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, "no such threat-intelligence file or folder"))
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(file), None, f"cannot read: {exc}"))
            continue
        for number, raw in enumerate(text.splitlines(), 1):
            entry = raw.split("#", 1)[0].strip().lower()
            if not entry:
                continue
            problem = _add(intel, entry, file.stem)
            if problem:
                problems.append(Problem(str(file), number, problem))
    if problems:
        raise InputError(problems)
    return intel


def _add(intel: ThreatIntel, entry: str, name: str) -> str | None:
    try:
        net = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        if HOSTNAME.match(entry) and "." in entry:
            intel.domains[entry.rstrip(".")] = name
            return None
        return f"'{entry}' is neither an IP address, a CIDR nor a domain"
    if net.num_addresses == 1:
        intel.addresses[str(net.network_address)] = name
    elif isinstance(net, ipaddress.IPv4Network):
        intel.v4_ranges.append((int(net.network_address), int(net.broadcast_address), name))
    else:
        intel.v6_networks.append((net, name))
    return None
