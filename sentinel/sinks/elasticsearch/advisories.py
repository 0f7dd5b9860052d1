"""Early warnings on the shared cluster: the issuing site's sink writes them, every site reads them back.

A warning's match expression holds values of any type, which dynamic mapping would fix per field on first sight
(a number here, a string in the next warning: refused). So the document keeps what people search on as fields and
the warning itself as one JSON string, which is what the reading sites parse.
"""

from __future__ import annotations

from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch
from pydantic import ValidationError

from sentinel.advisories.model import Advisory
from sentinel.errors import InputError, Problem
from sentinel.sinks.elasticsearch.settings import mask_url
from sentinel.sinks.elasticsearch.templates import IndexNames

#: more warnings than any city issues in a year; one page, so a sync is one request
MAX_ADVISORIES = 1000


def advisory_document(advisory: Advisory) -> dict[str, Any]:
    return {
        "@timestamp": advisory.issued_at.isoformat(),
        "event": {"kind": "enrichment", "category": ["threat"], "dataset": "sentinel.advisory"},
        "sentinel": {
            "site": advisory.issued_by,
            "advisory": {
                "id": advisory.id,
                "title": advisory.title,
                "title_zh": advisory.title_zh,
                "severity": advisory.severity.value,
                "issued_by": advisory.issued_by,
                "issued_at": advisory.issued_at.isoformat(),
                "deadline": advisory.deadline.isoformat(),
                "withdrawn_at": advisory.withdrawn_at.isoformat() if advisory.withdrawn_at else None,
                "rule_id": advisory.rule_id,
                "body": advisory.model_dump_json(by_alias=True, exclude_none=True),
            },
        },
    }


def fetch_advisories(client: Elasticsearch, names: IndexNames, url: str) -> tuple[list[Advisory], list[str]]:
    """Every site's warnings on the cluster, oldest first, and a line for each document that is not a valid
    warning (named by index and id: it is skipped, the rest still apply)."""
    try:
        answer = client.search(
            index=names.advisories_pattern,
            query={"match_all": {}},
            size=MAX_ADVISORIES,
            ignore_unavailable=True,
            allow_no_indices=True,
        )
    except TransportError as exc:
        raise InputError([Problem(mask_url(url), None, f"cannot read early warnings: {exc.message}")]) from None
    except ApiError as exc:
        raise InputError([Problem(mask_url(url), None, f"cannot read early warnings: {exc.message}")]) from None
    found: list[Advisory] = []
    bad: list[str] = []
    for hit in answer.body.get("hits", {}).get("hits", []):
        where = f"{hit.get('_index')}/{hit.get('_id')}"
        try:
            body = hit["_source"]["sentinel"]["advisory"]["body"]
            found.append(Advisory.model_validate_json(body))
        except (KeyError, TypeError, ValidationError, ValueError) as exc:
            bad.append(f"{where}: not a valid early warning ({str(exc).splitlines()[0][:200]})")
    return sorted(found, key=lambda a: (a.issued_at, a.id)), bad
