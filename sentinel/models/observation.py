"""What a collector saw about one target at one moment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sentinel.models.observer import Vantage


class ObservationStatus(StrEnum):
    OK = "ok"
    #: The probe ran but could not observe (timeout, refused, out of scope...). Never read as "fine".
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Observation:
    """One typed result. `data` holds flat dotted field names (``cert.days_to_expiry``) read by rules.

    `site` and `vantage` say who observed; collectors leave them unset and `Sentinel.ingest` stamps the instance's."""

    kind: str
    system_id: str
    target: str
    observed_at: datetime
    probe: str
    status: ObservationStatus = ObservationStatus.OK
    data: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    site: str | None = None
    vantage: Vantage | None = None

    def get(self, name: str) -> Any:
        """A field as rules see it: the observation's own attributes, then its data."""
        match name:
            case "status":
                return self.status.value
            case "error":
                return self.error
            case "kind":
                return self.kind
            case "target":
                return self.target
            case "probe":
                return self.probe
            case "system_id":
                return self.system_id
            case "site":
                return self.site
            case "vantage":
                return self.vantage.value if self.vantage is not None else None
        return self.data.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "system_id": self.system_id,
            "target": self.target,
            "observed_at": self.observed_at.isoformat(),
            "probe": self.probe,
            "status": self.status.value,
            "error": self.error,
            "site": self.site,
            "vantage": self.vantage.value if self.vantage is not None else None,
            "data": dict(self.data),
        }
