"""Index names, ECS-style mappings, component and index templates, and the ILM policy, as plain data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentinel.models.observer import DEFAULT_SITE
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings

KW: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
DATE: dict[str, Any] = {"type": "date"}
LONG: dict[str, Any] = {"type": "long"}
TEXT: dict[str, Any] = {"type": "match_only_text"}


def _obj(**fields: dict[str, Any]) -> dict[str, Any]:
    return {"properties": fields}


@dataclass(frozen=True)
class IndexNames:
    """Every name Sentinel writes to or installs, derived from `index_prefix` and the instance's site.

    Each site writes its own indices (`sentinel-findings-latest-city`, `...-hexi-district`), so a district reads
    (and may be granted) only its own, and the city reads the whole estate through the patterns
    (`latest_pattern`: `sentinel-findings-latest-*`). Templates are per prefix, shared by every site."""

    prefix: str
    site: str = DEFAULT_SITE

    @property
    def latest(self) -> str:
        """One document per finding (``_id`` = site:vantage:finding id), the current state: what dashboards count."""
        return f"{self.prefix}-findings-latest-{self.site}"

    @property
    def history(self) -> str:
        """Data stream: a snapshot each time a finding is recorded (append only)."""
        return f"{self.prefix}-findings-history-{self.site}"

    @property
    def observations(self) -> str:
        return f"{self.prefix}-observations-{self.site}"

    @property
    def advisories(self) -> str:
        """Early warnings this site issued (``_id`` = warning id; the latest text wins, like `latest`)."""
        return f"{self.prefix}-advisories-{self.site}"

    @property
    def advisories_pattern(self) -> str:
        """Every site's warnings: what `sentinel advisory sync` reads."""
        return f"{self.prefix}-advisories-*"

    @property
    def latest_pattern(self) -> str:
        """Every site's latest state (not the single index of before sites, which upgraded instances leave alone)."""
        return f"{self.prefix}-findings-latest-*"

    @property
    def history_pattern(self) -> str:
        return f"{self.prefix}-findings-history-*"

    @property
    def observations_pattern(self) -> str:
        return f"{self.prefix}-observations-*"

    # Template names stay those of before sites, so `es setup` updates them in place. Their patterns also match
    # the pre-sites names (no site suffix): Elasticsearch refuses a template change that leaves an existing data
    # stream without a matching template.
    @property
    def latest_template(self) -> str:
        return f"{self.prefix}-findings-latest"

    @property
    def history_template(self) -> str:
        return f"{self.prefix}-findings-history"

    @property
    def observations_template(self) -> str:
        return f"{self.prefix}-observations"

    @property
    def ilm_policy(self) -> str:
        return f"{self.prefix}-retention"

    @property
    def ecs_component(self) -> str:
        return f"{self.prefix}-ecs-mappings"

    @property
    def stream_component(self) -> str:
        return f"{self.prefix}-stream-settings"


ECS_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "message": TEXT,
    "event": _obj(
        kind=KW,
        category=KW,
        type=KW,
        dataset=KW,
        module=KW,
        outcome=KW,
        severity=LONG,
        created=DATE,
        start=DATE,
        end=DATE,
        id=KW,
    ),
    "observer": _obj(vendor=KW, product=KW, type=KW, version=KW, hostname=KW, name=KW),
    "rule": _obj(id=KW, name=KW, category=KW, ruleset=KW, description=TEXT, reference=KW),
    "vulnerability": _obj(
        id=KW,
        severity=KW,
        category=KW,
        description=TEXT,
        classification=KW,
        reference=KW,
        scanner=_obj(vendor=KW),
    ),
    "destination": _obj(address=KW, domain=KW, ip={"type": "ip"}, port=LONG),
    "network": _obj(transport=KW),
    "url": _obj(full=KW, original=KW, scheme=KW, domain=KW, port=LONG, path=KW),
    "tls": _obj(
        version=KW,
        version_protocol=KW,
        cipher=KW,
        server=_obj(
            not_after=DATE,
            not_before=DATE,
            subject=KW,
            issuer=KW,
            x509=_obj(not_after=DATE, not_before=DATE, subject=_obj(common_name=KW), issuer=_obj(common_name=KW)),
        ),
    ),
    "labels": {"type": "object", "dynamic": True},
    "sentinel": _obj(
        site=KW,
        vantage=KW,
        system=_obj(
            id=KW, name=KW, tier=KW, department=KW, district=KW, mlps_level=LONG, cii={"type": "boolean"}, tags=KW
        ),
        finding=_obj(
            id=KW,
            status=KW,
            status_reason=TEXT,
            status_by=KW,
            first_seen=DATE,
            last_seen=DATE,
            occurrences=LONG,
            regression={"type": "boolean"},
            suppressed_until=DATE,
            resolved_at=DATE,
            remediation=TEXT,
            target=KW,
        ),
        controls=KW,
        evidence={"type": "flattened"},
        observation=_obj(kind=KW, probe=KW, status=KW, target=KW, error=TEXT, data={"type": "flattened"}),
    ),
}

ECS_MAPPINGS: dict[str, Any] = {
    # Unknown fields stay in _source but are not indexed: a hostile banner cannot explode the mapping.
    "dynamic": False,
    # labels.* are registry metadata (strings): index them as keywords.
    "dynamic_templates": [{"labels_as_keyword": {"path_match": "labels.*", "mapping": KW}}],
    "properties": ECS_PROPERTIES,
}


def ilm_policy(es: ElasticsearchSettings) -> dict[str, Any]:
    return {
        "phases": {
            "hot": {"actions": {"rollover": {"max_primary_shard_size": "50gb", "max_age": "30d"}}},
            "delete": {"min_age": f"{es.retention_days}d", "actions": {"delete": {}}},
        }
    }


def component_templates(names: IndexNames) -> dict[str, dict[str, Any]]:
    return {
        names.ecs_component: {"template": {"mappings": ECS_MAPPINGS}},
        names.stream_component: {
            "template": {"settings": {"index.lifecycle.name": names.ilm_policy, "index.number_of_replicas": 1}}
        },
    }


def index_templates(names: IndexNames) -> dict[str, dict[str, Any]]:
    """Priority 200 so the built-in logs-*/metrics-* templates never win for our names."""
    return {
        names.latest_template: {
            "index_patterns": [f"{names.latest_template}*"],
            "composed_of": [names.ecs_component],
            "priority": 200,
            "template": {"settings": {"index.number_of_replicas": 1}},
        },
        names.history_template: {
            "index_patterns": [f"{names.history_template}*"],
            "composed_of": [names.ecs_component, names.stream_component],
            "data_stream": {},
            "priority": 200,
        },
        names.observations_template: {
            "index_patterns": [f"{names.observations_template}*"],
            "composed_of": [names.ecs_component, names.stream_component],
            "data_stream": {},
            "priority": 200,
        },
    }
