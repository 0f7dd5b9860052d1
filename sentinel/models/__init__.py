"""Typed data passed between stages: observations (collectors → engine) and findings (engine → store/sinks)."""

from sentinel.models.finding import Finding, FindingStatus, Severity
from sentinel.models.observation import Observation, ObservationStatus
from sentinel.models.target import host_port, port_target

__all__ = ["Finding", "FindingStatus", "Observation", "ObservationStatus", "Severity", "host_port", "port_target"]
