"""The city's read side over the shared cluster (sentinel/sinks/elasticsearch/estate.py), and the query evaluation the
Elasticsearch double answers it with (tests/support/es_query.py), checked against what Elasticsearch documents.

The reader is exercised with the official client over HTTP against the double, seeded by real instances shipping
(tests/support/vantage_lab.py) or by the sink's own `finding_document`; `sentinel compliance status --estate` and
`sentinel report compliance --estate` run through `main()` as an operator would run them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch, helpers

from sentinel.advisories.loader import parse_advisory_file
from sentinel.advisories.progress import by_site
from sentinel.cli.main import main
from sentinel.findings.policy import FindingsSettings
from sentinel.models import Finding, FindingStatus, Severity, Vantage
from sentinel.registry.models import Registry
from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.documents import _scalar_leaves, finding_document, latest_id, observer
from sentinel.sinks.elasticsearch.estate import (
    EstateFilter,
    EstateQueryError,
    EstateReader,
    EstateScope,
    EstateUnavailableError,
    finding_from_document,
)
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.elasticsearch.templates import IndexNames
from sentinel.sinks.shipper import Shipper
from tests.es_double import EsDouble
from tests.support import es_query
from tests.support.es_query import Doc, Picked
from tests.support.findings import make_finding
from tests.support.vantage_lab import SYSTEM, closed_port, instance, lab_registry, listening

ADVISORY = Path(__file__).resolve().parents[1] / "docs" / "examples" / "advisory.yaml"
WHO = [("city", Vantage.INTERNET), ("hexi-district", Vantage.INTERNAL), ("nanhu-district", Vantage.INTERNET)]


# -- the double's query evaluation, against documented Elasticsearch behaviour ------------------------------------


def docs(*sources: dict[str, Any], index: str = "i") -> list[Doc]:
    return [Doc(index, str(n), s) for n, s in enumerate(sources)]


def ids(answer: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in answer["hits"]["hits"]]


def test_bool_clauses_follow_the_documented_should_rule() -> None:
    # "If the bool query includes at least one should clause and no must or filter clauses, the default value is 1.
    # Otherwise, the default value is 0." (Query DSL, bool query, minimum_should_match)
    found = docs({"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3})
    only_should = {"query": {"bool": {"should": [{"term": {"b": "x"}}, {"term": {"b": "y"}}]}}}
    assert ids(es_query.search(found, only_should, 1)) == ["0", "1"]
    with_filter = {"query": {"bool": {"filter": [{"range": {"a": {"gte": 2}}}], "should": [{"term": {"b": "y"}}]}}}
    assert ids(es_query.search(found, with_filter, 1)) == ["1", "2"]  # should is optional next to a filter
    at_least = {"query": {"bool": {"filter": [{"exists": {"field": "a"}}], "should": [{"term": {"b": "x"}}]}}}
    at_least["query"]["bool"]["minimum_should_match"] = 1
    assert ids(es_query.search(found, at_least, 1)) == ["0"]
    negated = {"query": {"bool": {"must_not": [{"terms": {"b": ["x", "y"]}}]}}}
    assert ids(es_query.search(found, negated, 1)) == ["2"]


def test_fields_arrays_exists_and_ranges_read_as_elasticsearch_indexes_them() -> None:
    found = docs(
        {"sentinel": {"site": "city"}, "tags": ["a", "b"], "at": "2026-12-01T08:00:00+08:00", "n": None},
        {"sentinel.site": "hexi-district", "tags": [], "at": "2026-12-01T01:00:00Z", "n": 5},  # a dotted key
        {"objs": [{"k": "x"}, {"k": "y"}], "n": [1, 9]},  # object arrays are flattened
    )

    def match(query: dict[str, Any]) -> list[str]:
        return ids(es_query.search(found, {"query": query}, 1))

    assert match({"term": {"sentinel.site": "hexi-district"}}) == ["1"]
    assert match({"term": {"tags": "b"}}) == ["0"]  # an array matches on any element
    assert match({"exists": {"field": "tags"}}) == ["0"]  # [] and null are not indexed: no value
    assert match({"exists": {"field": "n"}}) == ["1", "2"]
    assert match({"term": {"objs.k": "y"}}) == ["2"]
    # 08:00+08:00 and 00:00Z are the same instant: dates compare as instants, not as text
    assert match({"range": {"at": {"lt": "2026-12-01T00:30:00Z"}}}) == ["0"]
    assert match({"range": {"n": {"gt": 4, "lte": 5}}}) == ["1"]
    assert match({"range": {"n": {"gte": 9}}}) == ["2"]  # any value of a multi-valued field
    assert match({"wildcard": {"sentinel.site": {"value": "HEXI*", "case_insensitive": True}}}) == ["1"]
    assert match({"wildcard": {"sentinel.site": {"value": "HEXI*"}}}) == []


def test_match_reads_words_and_chinese_characters_like_the_standard_analyser() -> None:
    found = docs({"message": "TLS certificate expired"}, {"message": "证书即将过期"})
    both = {"match": {"message": {"query": "certificate TLS", "operator": "and"}}}
    assert ids(es_query.search(found, {"query": both}, 1)) == ["0"]
    assert ids(es_query.search(found, {"query": {"match": {"message": "过期"}}}, 1)) == ["1"]
    assert es_query.analyse("HTTPS 证书") == ["https", "证", "书"]


def test_sort_missing_values_search_after_and_the_result_window() -> None:
    found = docs(
        {"sev": 3, "at": "2026-12-01T00:00:00Z", "tags": ["b", "z"]},
        {"sev": 5, "at": "2026-11-01T00:00:00Z", "tags": ["c"]},
        {"at": "2026-10-01T00:00:00Z", "tags": ["a"]},
        {"sev": 5, "at": "2026-12-01T00:00:00Z", "tags": ["y"]},
    )
    body: dict[str, Any] = {"sort": [{"sev": "desc"}, {"at": {"order": "desc"}}], "size": 2}
    first = es_query.search(found, body, 1)
    assert ids(first) == ["3", "1"] and first["hits"]["hits"][0]["_score"] is None
    # dates sort (and come back in `sort`) as epoch milliseconds
    assert first["hits"]["hits"][0]["sort"] == [5, int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)]
    after = es_query.search(found, {**body, "search_after": first["hits"]["hits"][-1]["sort"]}, 1)
    assert ids(after) == ["0", "2"]  # a missing value sorts last in either order
    # multi-valued: ascending uses the smallest value, descending the largest
    assert ids(es_query.search(found, {"sort": [{"tags": "asc"}]}, 1)) == ["2", "0", "1", "3"]
    assert ids(es_query.search(found, {"sort": [{"tags": "desc"}]}, 1)) == ["0", "3", "1", "2"]
    with pytest.raises(es_query.QueryError, match="Result window is too large") as caught:
        es_query.search(found, {"from": 9_990, "size": 20}, 1)
    assert caught.value.kind == "illegal_argument_exception"


def test_total_hits_are_exact_to_ten_thousand_unless_asked() -> None:
    many = [Doc("i", str(n), {"n": n}) for n in range(10_001)]
    capped = es_query.search(many, {"size": 0}, 1)["hits"]["total"]
    assert capped == {"value": 10_000, "relation": "gte"}
    assert es_query.search(many, {"size": 0, "track_total_hits": True}, 1)["hits"]["total"]["value"] == 10_001
    assert "total" not in es_query.search(many, {"size": 0, "track_total_hits": False}, 1)["hits"]


def test_terms_aggregation_orders_counts_and_nests() -> None:
    found = docs(
        {"site": "b", "sev": 5, "sys": "s1", "at": "2026-12-01T00:00:00Z", "tags": ["x", "x"]},
        {"site": "a", "sev": 4, "sys": "s1", "at": "2026-12-02T00:00:00Z"},
        {"site": "b", "sev": 4, "sys": "s2", "at": "2026-11-30T00:00:00Z", "tags": ["x"]},
        {"site": "a", "sev": 5, "sys": "s3"},
        {"site": "c", "sev": 5, "sys": "s3"},
    )
    aggs = {
        "sites": {
            "terms": {"field": "site", "size": 2},
            "aggs": {
                "sev": {"terms": {"field": "sev"}},
                "systems": {"cardinality": {"field": "sys"}},
                "newest": {"max": {"field": "at"}},
                "critical": {"filter": {"term": {"sev": 5}}},
            },
        },
        "tags": {"terms": {"field": "tags"}},
    }
    answer = es_query.search(found, {"size": 0, "aggs": aggs}, 1)["aggregations"]
    sites = answer["sites"]
    # doc_count descending, ties by key ascending; `size` buckets, the rest in sum_other_doc_count
    assert [(b["key"], b["doc_count"]) for b in sites["buckets"]] == [("a", 2), ("b", 2)]
    assert sites["sum_other_doc_count"] == 1
    a, b = sites["buckets"]
    assert [(x["key"], x["doc_count"]) for x in a["sev"]["buckets"]] == [(4, 1), (5, 1)]  # numeric keys
    assert a["systems"] == {"value": 2} and a["critical"]["doc_count"] == 1
    dec2 = datetime(2026, 12, 2, tzinfo=UTC).timestamp() * 1000
    assert a["newest"] == {"value": dec2, "value_as_string": "2026-12-02T00:00:00.000Z"}  # epoch ms, and as text
    assert b["newest"]["value"] == dec2 - 86_400_000
    assert answer["tags"]["buckets"] == [{"key": "x", "doc_count": 2}]  # a document counts once per term
    empty = es_query.aggregate({"m": {"max": {"field": "at"}}}, docs({"x": 1}))
    assert empty == {"m": {"value": None}}  # no value: null, no value_as_string


def test_post_filter_narrows_hits_and_not_aggregations() -> None:
    found = docs({"site": "a"}, {"site": "b"}, {"site": "b"})
    body = {"post_filter": {"term": {"site": "b"}}, "aggs": {"s": {"terms": {"field": "site"}}}}
    answer = es_query.search(found, body, 1)
    assert ids(answer) == ["1", "2"] and answer["hits"]["total"] == {"value": 2, "relation": "eq"}
    assert [x["key"] for x in answer["aggregations"]["s"]["buckets"]] == ["b", "a"]


def test_index_expressions_missing_indices_and_count() -> None:
    raw = json.dumps({"site": "x"}).encode()
    indices = {"sentinel-findings-latest-city": {"1": (1, raw)}, "other": {"2": (1, raw)}}
    assert len(es_query.pick("sentinel-findings-latest-*", indices).docs) == 1
    assert len(es_query.pick("sentinel-findings-latest-*,other", indices).docs) == 2
    # a pattern matching nothing: an empty answer with no shards and no aggregations at all
    status, answer = es_query.respond(
        es_query.pick("nothing-*", indices), "_search", {"aggs": {"a": {"terms": {"field": "site"}}}}
    )
    assert status == 200 and answer["_shards"]["total"] == 0 and "aggregations" not in answer
    # a concrete name that does not exist: 404 index_not_found_exception, as the client's NotFoundError reads it
    status, answer = es_query.respond(es_query.pick("absent,other", indices), "_search", {})
    assert status == 404 and answer["error"]["type"] == "index_not_found_exception"
    status, answer = es_query.respond(Picked([("i", "1", raw)], 1), "_count", {"query": {"term": {"site": "x"}}})
    assert (status, answer["count"]) == (200, 1)
    status, answer = es_query.respond(Picked([], 1), "_count", {"size": 3})
    assert status == 400 and "does not support [size]" in answer["error"]["reason"]
    status, answer = es_query.respond(Picked([], 1), "_search", {"query": {"fuzzy": {"a": "b"}}})
    assert status == 400 and answer["error"]["type"] == "parsing_exception"


# -- the reader over real instances' shipping ---------------------------------------------------------------------


def es_options(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "outbox_min_free_bytes": 0, "backoff_initial": 0.01, "backoff_max": 0.05, **extra}


def ship_instances(folder: Path, double: EsDouble) -> tuple[Registry, dict[str, list[Finding]]]:
    """The city and two districts sweep the same loopback services and ship through their outboxes."""
    found: dict[str, list[Finding]] = {}
    es = es_options(double.url)
    silent = closed_port()
    with listening() as management:
        registry = lab_registry(management, silent)
        for site, vantage in WHO:
            mine = ElasticsearchSettings.model_validate({**es, "site": site})
            client = build_client(mine)
            Installer(client, mine).install()
            client.close()
            app = instance(folder, registry, site, vantage, sinks={"elasticsearch": es})
            try:
                app.scan()
                (sink,) = app.sinks
                report = Shipper(app.store, sink).drain(timeout=10)
                assert report.remaining == 0 and report.dead_lettered == 0, report
                found[site] = app.store.list_findings()
            finally:
                app.close()
    return registry, found


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EsDouble, Registry, dict[str, list[Finding]]]]:
    with EsDouble() as double:
        registry, found = ship_instances(tmp_path_factory.mktemp("sites"), double)
        yield double, registry, found


def reader_for(double: EsDouble, **options: Any) -> EstateReader:
    return EstateReader(ElasticsearchSettings.model_validate(es_options(double.url)), **options)


def comparable(f: Finding) -> dict[str, Any]:
    """What a document carries of a finding (evidence as scalar leaves; stale_since and planned_fix are not
    shipped)."""
    out = f.to_dict()
    out["evidence"] = _scalar_leaves(f.evidence)
    out.pop("stale_since")
    out.pop("planned_fix")
    return out


def test_summary_and_findings_of_three_shipping_sites(
    shipped: tuple[EsDouble, Registry, dict[str, list[Finding]]],
) -> None:
    double, _registry, found = shipped
    reader = reader_for(double, sites=["city", "hexi-district", "nanhu-district", "beishan-district"])
    try:
        summary = reader.summary()
        rows = {r.site: r for r in summary.sites}
        assert set(rows) == {"city", "hexi-district", "nanhu-district", "beishan-district"}
        for site, findings in found.items():
            active = [f for f in findings if f.status.is_active]
            assert rows[site].active_total == len(active) > 0
            assert rows[site].active == {s: sum(1 for f in active if f.severity.value == s) for s in rows[site].active}
            assert rows[site].systems_affected == 1 and not rows[site].silent and rows[site].shipped
        # the Internet vantages see the management port that should answer only from inside: high, worst first
        assert rows["city"].worst == "high" and rows["hexi-district"].worst != "high"
        assert rows["beishan-district"].shipped is False and rows["beishan-district"].silent  # expected, silent
        assert summary.sites[0].site == "beishan-district"  # silent sites first: their figures mean nothing
        assert summary.totals.active_total == sum(r.active_total for r in rows.values())
        assert summary.totals.systems_affected == 1  # the same system, seen by three sites, counted once
        # every document comes back as the Finding its site recorded
        everything = list(reader.iter_findings())
        assert sorted(map(comparable, everything), key=lambda d: (d["site"], d["id"])) == sorted(
            (comparable(f) for fs in found.values() for f in fs), key=lambda d: (d["site"], d["id"])
        )
        page = reader.findings(EstateScope(), EstateFilter(sites=("hexi-district",)), per_page=1)
        assert page.total == len([f for f in found["hexi-district"] if f.status.is_active])
        assert page.by_site == {site: rows[site].active_total for site in found}  # the other sites too
        assert page.departments == ["区行政审批局"] and [i.finding.site for i in page.items] == ["hexi-district"]
        internet = reader.findings(EstateScope(), EstateFilter(vantage=Vantage.INTERNET, min_severity=Severity.HIGH))
        assert {i.finding.site for i in internet.items} == {"city", "nanhu-district"}
        assert {i.finding.rule_id for i in internet.items} == {"port_reachable_only_from_declared_vantages"}
        words = reader.findings(EstateScope(), EstateFilter(text="RESTRICTED network"))  # words of the title
        assert {i.finding.rule_id for i in words.items} == {"port_reachable_only_from_declared_vantages"}
        port = found["city"][0].target.split(":")[1]  # part of a target
        by_target = reader.findings(EstateScope(), EstateFilter(text=port))
        assert by_target.total and all(port in i.finding.target for i in by_target.items)
        # a district's scope sees its own site, whatever it asks for
        scoped = reader.findings(EstateScope(sites=("hexi-district",)), EstateFilter(sites=("city",)))
        assert scoped.total == 0 and set(scoped.by_site) == {"hexi-district"}
        assert {r.site for r in reader.summary(EstateScope(sites=("hexi-district",))).sites} == {"hexi-district"}
        assert reader.sites() == ["city", "hexi-district", "nanhu-district"] and reader.systems() == {SYSTEM}
    finally:
        reader.close()


def test_cursor_pages_and_bad_requests(shipped: tuple[EsDouble, Registry, dict[str, list[Finding]]]) -> None:
    double, _registry, found = shipped
    reader = reader_for(double)
    try:
        everything = reader.findings(EstateScope(), EstateFilter(status="all"), per_page=1000)
        assert everything.total == sum(len(fs) for fs in found.values()) and everything.after is None
        walked, after = [], None
        while True:
            page = reader.findings(EstateScope(), EstateFilter(status="all"), per_page=2, after=after)
            walked += [(i.finding.site, i.finding.id) for i in page.items]
            if page.after is None:
                break
            after = page.after
        assert walked == [(i.finding.site, i.finding.id) for i in everything.items]  # same order, nothing twice
        with pytest.raises(EstateQueryError, match="past the first 10,000"):
            reader.findings(EstateScope(), page=202, per_page=50)
        with pytest.raises(EstateQueryError, match="cursor is damaged"):
            reader.findings(EstateScope(), after="not-a-cursor!")
    finally:
        reader.close()


def test_early_warning_progress_by_site_from_the_cluster() -> None:
    advisory = parse_advisory_file(ADVISORY)
    now = advisory.deadline + timedelta(days=1)  # past the deadline: unverified systems are overdue
    states = {
        ("city", "sys-1"): FindingStatus.RESOLVED,
        ("hexi-district", "sys-2"): FindingStatus.OPEN,
        ("hexi-district", "sys-3"): FindingStatus.RECTIFIED,
        ("nanhu-district", "sys-4"): FindingStatus.SUPPRESSED,
    }
    with EsDouble() as double:
        client = Elasticsearch(double.url)
        actions = []
        for n, ((site, system), status) in enumerate(states.items()):
            f = make_finding(n, status)
            f.rule_id, f.system_id, f.site, f.vantage = advisory.rule_id, system, site, Vantage.INTERNET
            actions.append(
                {
                    "_index": IndexNames("sentinel", site).latest,
                    "_id": latest_id(f),
                    "_source": finding_document(f, None, observer()),
                }
            )
        other = make_finding(99)
        other.site = "city"
        actions.append(
            {
                "_index": "sentinel-findings-latest-city",
                "_id": latest_id(other),
                "_source": finding_document(other, None, observer()),
            }
        )
        helpers.bulk(client, actions)
        reader = reader_for(double)
        try:
            findings = reader.rule_findings(advisory.rule_id)
            rows = {r.site: r for r in by_site(advisory, findings, now, ["city", "hexi-district", "nanhu-district"])}
        finally:
            reader.close()
            client.close()
    assert len(findings) == 4 and {f.rule_id for f in findings} == {advisory.rule_id}
    assert (rows["city"].affected, rows["city"].verified, rows["city"].overdue) == (1, 1, 0)
    assert (rows["hexi-district"].affected, rows["hexi-district"].rectified, rows["hexi-district"].overdue) == (2, 1, 2)
    assert (rows["nanhu-district"].affected, rows["nanhu-district"].suppressed) == (0, 1)


def test_overdue_and_stale_follow_the_policy() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    policy = FindingsSettings(sla_days={Severity.CRITICAL: 3})
    cases = [  # (days since first seen, hours since last confirmed, status): overdue?, stale?
        (4, 1, FindingStatus.OPEN),  # past 3 days: overdue
        (2, 1, FindingStatus.OPEN),  # not yet
        (4, 30, FindingStatus.ACKNOWLEDGED),  # overdue, and not confirmed for 30 h: stale
        (9, 1, FindingStatus.SUPPRESSED),  # accepted risks are never overdue
        (9, 50, FindingStatus.RESOLVED),  # nor resolved ones, nor stale
    ]
    with EsDouble() as double:
        client = Elasticsearch(double.url)
        actions = []
        for n, (days, hours, status) in enumerate(cases):
            f = make_finding(n, status, now - timedelta(hours=hours))
            f.first_seen, f.site, f.vantage = now - timedelta(days=days), "hexi-district", Vantage.INTERNAL
            doc = finding_document(f, None, observer())
            actions.append({"_index": "sentinel-findings-latest-hexi-district", "_id": latest_id(f), "_source": doc})
        helpers.bulk(client, actions)
        reader = reader_for(double, policy=policy)
        try:
            (row,) = reader.summary(now=now).sites
            overdue = reader.findings(EstateScope(), EstateFilter(overdue=True, status="all"), now=now)
            stale = reader.findings(EstateScope(), EstateFilter(stale=True, status="all"), now=now)
        finally:
            reader.close()
            client.close()
    assert (row.active_total, row.overdue, row.stale, row.silent) == (3, 2, 1, False)
    assert sorted(i.finding.target for i in overdue.items) == [make_finding(0).target, make_finding(2).target]
    assert [i.finding.target for i in stale.items] == [make_finding(2).target]


def test_missing_indices_dead_and_refusing_clusters() -> None:
    with EsDouble() as double:
        reader = reader_for(double, sites=["hexi-district"])
        try:
            summary = reader.summary()  # nothing shipped anywhere: no index at all
            assert [(r.site, r.shipped, r.silent) for r in summary.sites] == [("hexi-district", False, True)]
            assert reader.findings(EstateScope()).total == 0 and reader.sites() == []
            double.stop()
            with pytest.raises(EstateUnavailableError) as first:
                reader.summary()
            with pytest.raises(EstateUnavailableError) as again:
                reader.findings(EstateScope())
            assert again.value.since == first.value.since == reader.down_since  # since the first failure
            assert "cannot be read since" in str(first.value) and "ConnectionError" in first.value.reason
            assert double.url in str(first.value)
            double.start()
            assert reader.findings(EstateScope()).total == 0 and reader.down_since is None
        finally:
            reader.close()
    with EsDouble() as impostor:
        impostor.faults.impostor = True  # answers, but not as Elasticsearch (the client checks the product header)
        fooled = reader_for(impostor)
        try:
            with pytest.raises(EstateUnavailableError, match="not Elasticsearch"):
                fooled.summary()
        finally:
            fooled.close()
    with EsDouble(api_key="the-right-key") as guarded:
        wrong = EstateReader(ElasticsearchSettings.model_validate(es_options(guarded.url, api_key="wrong")))
        try:
            with pytest.raises(EstateUnavailableError, match="HTTP 401 security_exception") as refused:
                wrong.summary()
            assert "api_key" in refused.value.reason
        finally:
            wrong.close()


def test_finding_from_a_document_without_optional_fields() -> None:
    f = finding_from_document({"sentinel": {"site": "city", "finding": {"id": "x", "status": "open"}}})
    assert (f.id, f.site, f.vantage, f.severity, f.status) == ("x", "city", None, Severity.INFO, FindingStatus.OPEN)
    assert f.first_seen == f.last_seen == datetime.fromtimestamp(0, UTC)


# -- compliance and reports over the estate ------------------------------------------------------------------------


def settings_file(folder: Path, double: EsDouble, registry: Registry) -> Path:
    reg = folder / "registry.yaml"
    reg.write_text(
        yaml.safe_dump(
            {
                "scope": {"allow": ["127.0.0.0/8"]},
                "systems": [s.model_dump(mode="json", exclude_none=True) for s in registry.systems],
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    config = folder / "sentinel.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "registry": str(reg),
                "store": str(folder / "absent.db"),
                "site": "city",
                "sinks": {"elasticsearch": {"url": double.url}},
            }
        ),
        encoding="utf-8",
    )
    return config


def test_compliance_status_and_report_read_the_estate(
    shipped: tuple[EsDouble, Registry, dict[str, list[Finding]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    double, registry, found = shipped
    config = settings_file(tmp_path, double, registry)

    def status(*extra: str) -> tuple[int, list[dict[str, Any]], str]:
        code = main(["compliance", "status", "--config", str(config), "--estate", "--format", "jsonl", *extra])
        out, err = capsys.readouterr()
        return code, [json.loads(line) for line in out.splitlines()], err

    code, lines, _ = status()
    verdicts = [v for v in lines if v["type"] == "verdict"]
    failing = {v["control"] for v in verdicts if v["verdict"] in ("non_compliant", "partially_compliant")}
    cited = {i for v in verdicts for i in v["findings"]}
    assert code == 0 and failing and cited and cited <= {f.id for fs in found.values() for f in fs}
    # the boundary control fails on the Internet vantages' evidence: the city's and nanhu's findings
    restriction = {
        f.id for fs in found.values() for f in fs if f.rule_id == "port_reachable_only_from_declared_vantages"
    }
    assert restriction and restriction <= cited
    assert not (tmp_path / "absent.db").exists()  # the local store was never opened, nor created
    # --site: that district's evidence only
    code, lines, _ = status("--site", "hexi-district")
    hexi = {i for v in lines if v["type"] == "verdict" for i in v["findings"]}
    assert code == 0 and hexi and hexi <= {f.id for f in found["hexi-district"]}
    code, _, err = status("--site", "xihu-district")
    assert code == 2
    assert (
        "--site: no site 'xihu-district' in the cluster (sites that shipped: city, hexi-district, nanhu-district)"
        in err
    )
    assert main(["compliance", "status", "--config", str(config), "--site", "city"]) == 2
    assert "add --estate" in capsys.readouterr().err
    out = tmp_path / "estate.json"
    assert main(["report", "compliance", "--config", str(config), "--estate", "--format", "json", "-o", str(out)]) == 0
    assert "(1 systems" in capsys.readouterr().out
    assert "port_reachable_only_from_declared_vantages" in out.read_text(encoding="utf-8")


def test_compliance_estate_with_the_cluster_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    silent = closed_port()
    with listening() as management:
        registry = lab_registry(management, silent)
    double = EsDouble().start()
    config = settings_file(tmp_path, double, registry)
    double.stop()
    assert main(["compliance", "status", "--config", str(config), "--estate"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: Elasticsearch at http://127.0.0.1:") and "cannot be read since" in err
    assert "Traceback" not in err
    assert main(["report", "compliance", "--config", str(config), "--estate", "-o", str(tmp_path / "r.html")]) == 3
    assert "cannot be read since" in capsys.readouterr().err
