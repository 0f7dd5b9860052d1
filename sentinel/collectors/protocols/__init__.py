"""Sans-IO protocol codecs for service probes: bytes in, typed results out, no sockets.

Each parser is bounded and total: a hostile or broken peer gives `ProtocolError` (or an "unknown"
result), never an unbounded loop or an unexpected exception type.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """The remote side broke the protocol (malformed, truncated or oversized answer)."""
