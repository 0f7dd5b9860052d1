"""Split the registry across monitor instances with rendezvous (highest-random-weight) hashing.

Each system goes to the shard with the highest sha256(system id, shard number). Going from n to
n+1 instances moves only the systems whose new top choice is the new shard (about 1/(n+1) of
them), and every instance computes the same assignment with no coordination.
"""

from __future__ import annotations

import hashlib
import re

from sentinel.registry.models import Registry

SHARD_SPEC = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(spec: str) -> tuple[int, int]:
    """'i/n' with 1 <= i <= n (1-based, as operators count instances)."""
    match = SHARD_SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"'{spec}' is not a shard like 1/3")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: the index must be between 1 and {count}")
    return index, count


def shard_of(system_id: str, count: int) -> int:
    def weight(shard: int) -> bytes:
        return hashlib.sha256(f"{system_id}\x1f{shard}".encode()).digest()

    return max(range(1, count + 1), key=weight)


def shard_registry(registry: Registry, index: int, count: int) -> Registry:
    """The systems shard `index` of `count` owns (the scope is kept whole)."""
    if count == 1:
        return registry
    systems = tuple(s for s in registry.systems if shard_of(s.id, count) == index)
    return Registry(scope=registry.scope, systems=systems, sources=registry.sources)
