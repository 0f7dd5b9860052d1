"""Typed data passed between stages: observations (collectors → engine) and findings (engine → store/sinks)."""

from sentinel.models.finding import Finding, FindingStatus, Severity
from sentinel.models.observation import Observation, ObservationStatus
from sentinel.models.observer import DEFAULT_OBSERVER, Observer, Vantage
from sentinel.models.target import host_port, port_target

__all__ = [
    "DEFAULT_OBSERVER",
    "Finding",
    "FindingStatus",
    "Observation",
    "ObservationStatus",
    "Observer",
    "Severity",
    "Vantage",
    "host_port",
    "port_target",
]
