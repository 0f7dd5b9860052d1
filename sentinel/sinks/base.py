"""What a sink is. Every built-in sink is an *outbox sink*: the findings (and, if it wants them, observations) it
must deliver are encoded into rows of the store's outbox in the very transaction that records them, and one
shipper (`sentinel.sinks.shipper`) delivers those rows with retries, backoff, jitter and dead letters.

A sink therefore only says how to encode and how to deliver a batch; it never decides what is retried, when, or
what survives a restart. Rows carry ids fixed at enqueue time, so a resend (retry, crash between the peer's answer
and our commit) is recognised by the peer (409, same alert labels, same syslog MSGID/SD id) and never doubles.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal, Protocol

from sentinel.advisories.model import Advisory
from sentinel.findings.tracker import ApplyResult
from sentinel.models import Finding, FindingStatus, Observation
from sentinel.registry.models import System
from sentinel.sinks.settings import SinkOptions

Verdict = Literal["done", "duplicate", "retry", "dead"]


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: int
    started_at: datetime
    finished_at: datetime
    observations: list[Observation]
    changes: ApplyResult


class Sink(Protocol):
    """The minimal sink: what `Sentinel.close()` and `validate()` need from every sink."""

    name: str

    def close(self) -> None: ...


@dataclass(frozen=True)
class Entry:
    """One row to queue. `coalesce`: a newer entry with the same (stream, doc_id) replaces an unshipped older one
    (current state, where only the latest matters); `droppable`: may be dropped when the queue is full (events,
    never current finding state)."""

    stream: str
    doc_id: str
    body: str
    coalesce: bool = False
    droppable: bool = True


@dataclass(frozen=True)
class Queued:
    """A queued row as the shipper hands it to `deliver` (seq grows with every enqueue: usable as a version)."""

    seq: int
    stream: str
    doc_id: str
    body: str
    attempts: int


@dataclass
class Delivery:
    """What a delivery attempt did. `statuses`: (status, reason) per row, in order, HTTP-like: 2xx stored, 409
    already there, other 4xx the row itself is wrong, 0 no usable answer; rows past the end of the list got no
    answer. `unreachable`: the peer could not be reached (for the outage log). `state`: the sink's own persisted
    state to change with this outcome, in the same transaction (key -> value, None deletes)."""

    statuses: list[tuple[int, str]] = field(default_factory=list)
    unreachable: str | None = None
    state: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class FindingChange:
    """A finding being written, with the status it had before the write (None: it is new)."""

    finding: Finding
    previous: FindingStatus | None

    @property
    def kind(self) -> Literal["new", "reopened", "resolved", "updated"]:
        status = self.finding.status
        if self.previous is None:
            return "new"
        if self.previous == FindingStatus.RESOLVED and status.is_active:
            return "reopened"
        if status == FindingStatus.RESOLVED and self.previous != FindingStatus.RESOLVED:
            return "resolved"
        return "updated"


@dataclass(frozen=True)
class EncodeContext:
    """What encoding may use besides the items: the time, registry metadata, the sweep being recorded."""

    now: float
    system: Callable[[str], System | None]
    sweep_id: int | None = None


def content_id(*parts: str) -> str:
    """A deterministic document id from the document's content (same content, same id: resends are recognised)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def classify_http(status: int, dead: Sequence[int] = (400, 404)) -> Verdict:
    """'done', 'duplicate', 'retry' or 'dead' for one row's status (0: no usable answer).

    Everything that is not the row's fault is retried: 429, 5xx, but also 401/403 (credentials, fixed by the
    operator) and 413, so a misconfiguration never empties the queue into dead letters.
    """
    if 200 <= status < 300:
        return "done"
    if status == 409:
        return "duplicate"
    if status in dead:
        return "dead"
    return "retry"


class OutboxSink(ABC):
    """Base class of outbox sinks; subclasses set the class attributes and implement `encode_*` and `deliver`.

    To add a sink: one module with a subclass (and its `Options`, a `SinkOptions` model), one line in
    `sentinel.sinks.BUILTIN_SINKS`, one test. Settings: `sinks: {NAME: {...}}` or `SENTINEL_SINKS__NAME__KEY`.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # for people, in log lines: "Elasticsearch"
    Options: ClassVar[type[SinkOptions]] = SinkOptions
    #: findings encoding needs each finding's status before the write (to tell new / reopened / resolved)
    needs_previous: ClassVar[bool] = False
    #: what is dropped when the queue is full, for the log line
    droppable_what: ClassVar[str] = "event documents"

    def __init__(self, options: Mapping[str, object] | SinkOptions) -> None:
        self.options: SinkOptions = (
            options if isinstance(options, self.Options) else self.Options.model_validate(dict(options))
        )

    @property
    def wants_observations(self) -> bool:
        return self.options.ship_observations

    @property
    def flush_inline(self) -> bool:
        """Ship right after each ingest (one pass, no waiting); `sentinel run` ships from its loop instead."""
        return self.options.flush_after_ingest

    def encode_findings(self, changes: Sequence[FindingChange], ctx: EncodeContext) -> list[Entry]:
        return []

    def encode_observations(self, observations: Sequence[Observation], ctx: EncodeContext) -> list[Entry]:
        return []

    def encode_advisories(self, advisories: Sequence[Advisory], ctx: EncodeContext) -> list[Entry]:
        """Early warnings issued or withdrawn here, for a sink that carries them to the other sites (by default
        none does)."""
        return []

    def encode_rekeyed(
        self, moved: Sequence[tuple[str, Finding]], ctx: EncodeContext, state: Mapping[str, str]
    ) -> list[Entry]:
        """Findings from before sites that the store's instance adopted: (former id, finding now) pairs, with the
        sink's persisted state. A sink whose peer keys anything by finding id moves it here; by default nothing."""
        return []

    @abstractmethod
    def deliver(self, rows: Sequence[Queued], state: Mapping[str, str]) -> Delivery:
        """Send `rows` (in order); say which were delivered, which to retry, which are dead."""

    def classify(self, status: int) -> Verdict:
        return classify_http(status)

    def maintain(self, state: Mapping[str, str], now: float) -> Delivery | None:
        """Periodic work when nothing is queued (e.g. re-sending active alerts); None: nothing to do now."""
        return None

    def describe(self) -> str:
        """Where this sink delivers, for messages (no secrets)."""
        return self.name

    def close(self) -> None:
        return None
