"""What a probe is: it plans small jobs from the registry, and runs one job through a ScopedNetwork.

Probes never open sockets themselves: every packet goes through `ScopedNetwork`, which is where
scope, rate limits, concurrency and timeouts are enforced (one place, not one per probe).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from sentinel.config.settings import ProbeOptions
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import System

if TYPE_CHECKING:
    from sentinel.collectors.network import ScopedNetwork
    from sentinel.config.settings import CollectorSettings

#: what `runner._failed` puts on the error observation of a job that failed outright (out of scope, timed out)
RUNNER_ERROR_FIELDS = frozenset({"host", "error_kind", "reachable"})

#: "sweep": in the default `collectors.probes` (so `sentinel scan` and `sentinel run`); "run": only in `sentinel
#: run`'s default (`run.extra_probes`), on its own longer interval; "opt_in": only when listed
Schedule = Literal["sweep", "run", "opt_in"]


@dataclass(frozen=True, slots=True)
class ProbeJob:
    """One unit of probing work: one probe against one host (or URL) of one system."""

    probe: str
    system_id: str
    host: str
    target: str
    ports: tuple[int, ...] = ()
    declared: tuple[int, ...] = ()
    url: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def describe(self) -> str:
        what = self.url or (f"{self.host} ports {','.join(map(str, self.ports))}" if self.ports else self.host)
        return f"{self.probe:<10} {self.system_id:<24} {what}"


class Probe(ABC):
    #: unique name, used in settings (`collectors.probes`) and in observations
    name: ClassVar[str]
    #: the observation kind reported when the job cannot run at all (out of scope, no address, timeout)
    kind: ClassVar[str]
    #: the probe's own options, `collectors.<name>: {...}` (SENTINEL_COLLECTORS__<NAME>__<KEY>)
    Options: ClassVar[type[ProbeOptions]] = ProbeOptions
    #: which default probe lists include it (see `Schedule`)
    schedule: ClassVar[Schedule] = "sweep"
    #: deprecated flat keys of `collectors:` that set one of its options: {old key: option}
    legacy_keys: ClassVar[Mapping[str, str]] = {}
    #: a sweep plans lower phases first (shuffled within each), and runs each phase with job slots of its own:
    #: raw-packet probes (port scan, echo) are phase 0, so a full sweep's port part ends about when a port-only
    #: sweep would, while the conversations of phase 1 use the connection budget from the start
    phase: ClassVar[int] = 1
    #: the `data` fields it reports, per observation kind: what rules may read. `sentinel rules lint` checks every
    #: field a rule reads against them; tests/test_ruledev_fields.py runs the probes to keep them true.
    fields: ClassVar[Mapping[str, frozenset[str]]] = {}

    @classmethod
    def reported_fields(cls) -> dict[str, frozenset[str]]:
        """`fields`, with what the runner adds to an error observation of `kind`."""
        out = dict(cls.fields)
        out[cls.kind] = out.get(cls.kind, frozenset()) | RUNNER_ERROR_FIELDS
        return out

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings

    @abstractmethod
    def plan(self, system: System) -> Iterable[ProbeJob]:
        """The jobs this probe wants for one system (pure: no I/O)."""

    @abstractmethod
    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        """Run one job; a target that misbehaves yields error observations, never an exception."""

    def observation(
        self, job: ProbeJob, at: datetime, data: Mapping[str, Any], error: str | None = None
    ) -> Observation:
        """An observation of this probe's kind about the job's target; an `error` makes it an error observation."""
        return Observation(
            kind=self.kind,
            system_id=job.system_id,
            target=job.target,
            observed_at=at,
            probe=self.name,
            status=ObservationStatus.ERROR if error else ObservationStatus.OK,
            data=data,
            error=error,
        )

    def budget(self, job: ProbeJob) -> int:
        """Connections this job may open (for dry runs and planning)."""
        return max(1, len(job.ports))
