"""Kibana saved objects: valid NDJSON, every reference resolves, every field exists in Sentinel's mapping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sentinel.sinks.elasticsearch.templates import ECS_PROPERTIES, IndexNames

KIBANA = Path(__file__).parents[1] / "dashboards" / "kibana"


def load_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(KIBANA.glob("*.ndjson")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            obj = json.loads(line)
            assert {"id", "type", "attributes", "references"} <= obj.keys(), f"{path.name}:{number}"
            objects.append(obj)
    return objects


def mapped_fields(properties: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, spec in properties.items():
        out.add(prefix + name)
        out |= mapped_fields(spec.get("properties", {}), f"{prefix}{name}.")
    return out


FIELDS = mapped_fields(ECS_PROPERTIES)


def known(field: str) -> bool:
    return field in FIELDS or field.startswith("labels.")


def fields_used(obj: dict[str, Any]) -> set[str]:
    attrs = obj["attributes"]
    used: set[str] = set(attrs.get("columns", [])) | {s[0] for s in attrs.get("sort", [])}
    if "visState" in attrs:
        used |= {a["params"]["field"] for a in json.loads(attrs["visState"])["aggs"] if "field" in a["params"]}
    search = json.loads(attrs.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON", "{}"))
    query = (search.get("query") or {}).get("query", "")
    used |= set(re.findall(r"([a-z_@][\w.@]*):", query))
    return used


def test_objects_cover_the_three_deliverables() -> None:
    objects = load_objects()
    ids = [o["id"] for o in objects]
    assert len(ids) == len(set(ids))
    names = IndexNames("sentinel")
    views = {o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    assert views == {names.latest_pattern, names.history_pattern, names.observations_pattern}  # every site
    assert any(o["type"] == "search" and "explorer" in o["attributes"]["title"] for o in objects)
    assert any(o["type"] == "dashboard" and "SOC overview" in o["attributes"]["title"] for o in objects)


def test_every_reference_resolves() -> None:
    objects = load_objects()
    present = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in present, f"{obj['id']} -> {ref}"
        if obj["type"] == "dashboard":
            panels = json.loads(obj["attributes"]["panelsJSON"])
            names = {r["name"] for r in obj["references"]}
            assert {f"{p['panelIndex']}:{p['panelRefName']}" for p in panels} == names


def test_every_field_is_mapped() -> None:
    for obj in load_objects():
        for field in fields_used(obj):
            assert known(field), f"{obj['id']}: field '{field}' is not in the Sentinel mapping"
