"""A lightweight metric family and its text exposition (format 0.0.4).

The exporter builds these instead of prometheus_client's families because a scrape of a large estate renders
thousands of samples: escaping each distinct label value once and formatting lines directly is several times
faster than `generate_latest`. `to_metric()` gives the prometheus_client form for its registry and parsers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MetricType = Literal["gauge", "counter"]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Go-style float text, as Prometheus writes it (integers without a fraction, +Inf/-Inf/NaN)."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass
class Family:
    """One metric: name, type, help, label names, and (label values, value) samples."""

    name: str
    type: MetricType
    documentation: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    @classmethod
    def gauge(cls, name: str, documentation: str, labels: Sequence[str] = ()) -> Family:
        return cls(name, "gauge", documentation, tuple(labels))

    @classmethod
    def counter(cls, name: str, documentation: str, labels: Sequence[str] = ()) -> Family:
        """`name` without `_total`: the sample is named `NAME_total`, as in prometheus_client."""
        return cls(name, "counter", documentation, tuple(labels))

    def add(self, values: Sequence[str], value: float) -> None:
        self.samples.append((tuple(values), float(value)))

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.type == "counter" else self.name

    def with_labels(self, const: Sequence[tuple[str, str]]) -> Family:
        """The family with constant labels first on every sample (as `render_families(..., const)` writes them)."""
        if not const:
            return self
        names = tuple(k for k, _ in const)
        values = tuple(v for _, v in const)
        return Family(
            self.name, self.type, self.documentation, names + self.labels, [(values + x, v) for x, v in self.samples]
        )

    def to_metric(self) -> Metric:
        metric = Metric(self.name, self.documentation, self.type)
        name = self.sample_name
        metric.samples = [Sample(name, dict(zip(self.labels, values, strict=True)), v) for values, v in self.samples]
        return metric


def render_families(families: Iterable[Family], const: Sequence[tuple[str, str]] = ()) -> bytes:
    """The exposition; `const`: labels put first on every sample (the instance's site and vantage)."""
    escaped: dict[str, str] = {}
    lines: list[str] = []
    head = [f'{key}="{escape_label(raw)}"' for key, raw in const]
    bare = "{" + ",".join(head) + "}" if head else ""
    for family in families:
        name = family.sample_name
        lines.append(f"# HELP {name} {escape_help(family.documentation)}")
        lines.append(f"# TYPE {name} {family.type}")
        keys = family.labels
        for values, value in family.samples:
            if keys:
                parts = list(head)
                for key, raw in zip(keys, values, strict=True):
                    text = escaped.get(raw)
                    if text is None:
                        text = escaped[raw] = escape_label(raw)
                    parts.append(f'{key}="{text}"')
                lines.append(f"{name}{{{','.join(parts)}}} {format_value(value)}")
            else:
                lines.append(f"{name}{bare} {format_value(value)}")
    if not lines:
        return b""
    lines.append("")
    return "\n".join(lines).encode()
