"""Search and count as Elasticsearch evaluates them, for the test double (tests/es_double.py): the subset Sentinel
sends, answered in the shape the REST API documents, so the official client and Sentinel's reader cannot tell.

* Index expressions: comma-separated names and `*` patterns. A concrete name that does not exist is a 404
  `index_not_found_exception`; a pattern that matches nothing is an empty answer (`allow_no_indices` defaults to
  true) with `_shards.total` 0 and no `aggregations` key at all (elastic/elasticsearch#129762).
* Queries: `match_all`, `match_none`, `bool` (`must`, `filter`, `should`, `must_not`, `minimum_should_match`;
  `should` is optional once there is a `must` or `filter` clause), `term`, `terms`, `range` (`gt`/`gte`/`lt`/`lte`;
  dates compared as instants, `now` and `now-1d` style math), `exists`, `wildcard`, `prefix`, `ids`, and `match`
  (the standard analyser's reading: lower-cased words, each CJK ideograph a word of its own).
* Fields: dotted paths through objects, through literal dotted keys and through arrays (object arrays are
  flattened, as Elasticsearch stores them); `_index` and `_id` too.
* `sort` (`asc`/`desc`, `missing`, multi-valued fields by min/max), `search_after`, `from`/`size` within the
  10,000-hit result window, `track_total_hits`, `_source` filtering, `post_filter` (hits only, after aggregations).
* Aggregations: `terms` (`size`, `order` by `_count`/`_key`, `min_doc_count`, `missing`), `filter`, `filters`,
  `max`, `min`, `sum`, `avg`, `value_count`, `cardinality` (exact: what Elasticsearch returns below its precision
  threshold), each with sub-aggregations.

Types are read from the values, not from a mapping: an ISO-8601 string is a date (sort values and `max` are epoch
milliseconds, with `value_as_string`), a number is a number, anything else is a keyword.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cmp_to_key
from typing import Any

#: index.max_result_window's default
MAX_RESULT_WINDOW = 10_000
#: track_total_hits' default: exact up to this many, then "gte"
TOTAL_HITS_DEFAULT = 10_000
SEARCH_KEYS = frozenset(
    {"query", "aggs", "aggregations", "size", "from", "sort", "search_after", "track_total_hits", "_source"}
    | {"post_filter", "timeout"}
)
COUNT_KEYS = frozenset({"query"})


class QueryError(ValueError):
    """What Elasticsearch answers 400 to: `kind` is its error type."""

    def __init__(self, reason: str, kind: str = "parsing_exception") -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(slots=True)
class Doc:
    index: str
    id: str
    source: dict[str, Any]
    #: every leaf value by its dotted path, and the paths of objects above them (computed once per source)
    flat: tuple[dict[str, list[Any]], frozenset[str]] | None = None

    def fields(self) -> tuple[dict[str, list[Any]], frozenset[str]]:
        if self.flat is None:
            self.flat = flatten(self.source)
        return self.flat


@dataclass(frozen=True)
class Picked:
    """The documents an index expression names (taken under the double's lock), or the concrete name missing."""

    docs: list[tuple[str, str, bytes]]
    indices: int
    missing: str | None = None


# -- index expressions ---------------------------------------------------------------------------------------


def _pattern(part: str) -> re.Pattern[str]:
    return re.compile(re.escape(part).replace(r"\*", ".*"))


def pick(expression: str, indices: Mapping[str, Mapping[str, tuple[int, bytes]]]) -> Picked:
    """The (index, _id, raw source) of every document the expression names; call it holding the double's lock."""
    names: list[str] = []
    for part in (p.strip() for p in expression.split(",")):
        if not part:
            continue
        if "*" in part:
            rule = _pattern(part)
            names += [n for n in sorted(indices) if rule.fullmatch(n) and n not in names]
        elif part in indices:
            names += [part] if part not in names else []
        else:
            return Picked([], 0, missing=part)
    docs = [(name, doc_id, raw) for name in names for doc_id, (_version, raw) in indices[name].items()]
    return Picked(docs, len(names))


# -- responses ---------------------------------------------------------------------------------------------

#: parsed (and flattened) sources by their bytes: a search reads every document, and parsing dominates
_PARSED: dict[bytes, tuple[dict[str, Any], tuple[dict[str, list[Any]], frozenset[str]]]] = {}
_PARSED_MAX = 50_000


def _doc(index: str, doc_id: str, raw: bytes) -> Doc:
    found = _PARSED.get(raw)
    if found is None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        source = json.loads(raw)
        found = _PARSED[raw] = (source, flatten(source))
    return Doc(index, doc_id, found[0], found[1])


def respond(picked: Picked, what: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of `_search` or `_count` over the picked documents."""
    if picked.missing is not None:
        reason = f"no such index [{picked.missing}]"
        return 404, error_body(404, "index_not_found_exception", reason, index=picked.missing)
    started = time.perf_counter()
    try:
        docs = [_doc(index, doc_id, raw) for index, doc_id, raw in picked.docs]
        if what == "_count":
            return 200, count(docs, body, picked.indices)
        answer = search(docs, body, picked.indices)
        answer["took"] = int((time.perf_counter() - started) * 1000)  # as a cluster reports its own time
        return 200, answer
    except QueryError as exc:
        return 400, error_body(400, exc.kind, str(exc))


def error_body(status: int, kind: str, reason: str, **extra: str) -> dict[str, Any]:
    cause = {"type": kind, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def _shards(total: int) -> dict[str, int]:
    return {"total": total, "successful": total, "skipped": 0, "failed": 0}


def count(docs: Sequence[Doc], body: Mapping[str, Any], indices: int) -> dict[str, Any]:
    unknown = sorted(set(body) - COUNT_KEYS)
    if unknown:
        raise QueryError(f"request does not support [{unknown[0]}]")
    test = compile_query(body.get("query") or {"match_all": {}})
    return {"count": sum(1 for d in docs if test(d)), "_shards": _shards(indices)}


def search(docs: Sequence[Doc], body: Mapping[str, Any], indices: int) -> dict[str, Any]:
    unknown = sorted(set(body) - SEARCH_KEYS)
    if unknown:
        raise QueryError(f"Unknown key for a START_OBJECT in [{unknown[0]}].")
    size, start = _int(body.get("size", 10), "size"), _int(body.get("from", 0), "from")
    if size < 0 or start < 0:
        raise QueryError("[from] and [size] must be positive", "illegal_argument_exception")
    if start + size > MAX_RESULT_WINDOW:
        raise QueryError(
            f"Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but was "
            f"[{start + size}]. See the scroll api for a more efficient way to request large data sets.",
            "illegal_argument_exception",
        )
    test = compile_query(body.get("query") or {"match_all": {}})
    matched = [d for d in docs if test(d)]
    aggs = body.get("aggs", body.get("aggregations"))
    out: dict[str, Any] = {"took": 1, "timed_out": False, "_shards": _shards(indices)}
    aggregations = aggregate(aggs, matched) if aggs and indices else None
    if body.get("post_filter"):
        keep = compile_query(body["post_filter"])
        matched = [d for d in matched if keep(d)]
    sort = _sort_spec(body.get("sort"))
    keyed = [(d, _sort_values(d, sort)) for d in matched]

    def by_sort(a: tuple[Doc, list[Any]], b: tuple[Doc, list[Any]]) -> int:
        return _compare_keys(a[1], b[1], sort)

    if sort:
        keyed.sort(key=cmp_to_key(by_sort))  # stable: ties keep index order, as one shard would
    if body.get("search_after") is not None:
        if not sort:
            raise QueryError("Sort must contain at least one field.", "illegal_argument_exception")
        if start:
            reason = "`from` parameter must be set to 0 when `search_after` is used."
            raise QueryError(reason, "x_content_parse_exception")
        after = list(body["search_after"])
        if len(after) != len(sort):
            raise QueryError(
                f"search_after has {len(after)} value(s) but sort has {len(sort)}.", "illegal_argument_exception"
            )
        keyed = [(d, k) for d, k in keyed if _compare_keys(k, after, sort) > 0]
    hits: dict[str, Any] = {"max_score": None if sort else (1.0 if matched else None), "hits": []}
    total = _total(len(matched), body.get("track_total_hits"))
    if total is not None:
        hits = {"total": total, **hits}
    includes = _source_filter(body.get("_source", True))
    for doc, values in keyed[start : start + size]:
        hit: dict[str, Any] = {"_index": doc.index, "_id": doc.id, "_score": None if sort else 1.0}
        if includes is not False:
            hit["_source"] = doc.source if includes is True else _filter_source(doc.source, includes)
        if sort:
            hit["sort"] = values
        hits["hits"].append(hit)
    out["hits"] = hits
    if aggregations is not None:
        out["aggregations"] = aggregations
    return out


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise QueryError(f"[{name}] must be a number, not [{value}]", "x_content_parse_exception") from None


def _total(matched: int, track: Any) -> dict[str, Any] | None:
    if track is False:
        return None
    if track is True:
        return {"value": matched, "relation": "eq"}
    limit = TOTAL_HITS_DEFAULT if track is None else _int(track, "track_total_hits")
    return {"value": min(matched, limit), "relation": "eq" if matched <= limit else "gte"}


def _source_filter(spec: Any) -> bool | list[str]:
    if spec is True or spec is None:
        return True
    if spec is False:
        return False
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, list):
        return [str(s) for s in spec]
    if isinstance(spec, dict):
        return [str(s) for s in spec.get("includes", [])] or True
    raise QueryError(f"[_source] cannot be [{spec}]")


def _filter_source(source: Mapping[str, Any], includes: Sequence[str], prefix: str = "") -> dict[str, Any]:
    rules = [_pattern(p) for p in includes]
    out: dict[str, Any] = {}
    for key, value in source.items():
        path = f"{prefix}{key}"
        if any(r.fullmatch(path) for r in rules):
            out[key] = value
        elif isinstance(value, dict) and any(p.startswith(f"{path}.") or p.startswith("*") for p in includes):
            inner = _filter_source(value, includes, f"{path}.")
            if inner:
                out[key] = inner
    return out


# -- field values ------------------------------------------------------------------------------------------


def flatten(source: Mapping[str, Any]) -> tuple[dict[str, list[Any]], frozenset[str]]:
    """Leaf values by dotted path, as Elasticsearch indexes a source: `{"a": {"b": 1}}` and `{"a.b": 1}` are both
    field `a.b`, arrays (of objects too) are flattened into their path, null and [] index nothing; and the object
    paths above the leaves (what `exists` on an object matches)."""
    leaves: dict[str, list[Any]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for item in node:
                walk(item, path)
        elif node is not None:
            leaves.setdefault(path, []).append(node)

    walk(source, "")
    objects = {path.rsplit(".", cut)[0] for path in leaves for cut in range(1, path.count(".") + 1)}
    return leaves, frozenset(objects)


def field_values(doc: Doc, field: str) -> list[Any]:
    """Every leaf value a field names, arrays flattened; objects are not values (see `field_exists`)."""
    if field == "_index":
        return [doc.index]
    if field == "_id":
        return [doc.id]
    return doc.fields()[0].get(field, [])


def field_exists(doc: Doc, field: str) -> bool:
    """`exists`: an indexed value (not null, not an empty array), or an object with one below it."""
    if field in ("_index", "_id"):
        return True
    leaves, objects = doc.fields()
    return field in leaves or field in objects


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_DATE_MATH = re.compile(r"^now(?:([+-])(\d+)([yMwdhHms]))?$")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "H": 3600, "m": 60, "s": 1, "M": 30 * 86400, "y": 365 * 86400}


def as_date(value: Any) -> datetime | None:
    """An ISO-8601 string (or `now`, `now-1d`) as an aware instant; None for anything else."""
    if not isinstance(value, str):
        return None
    math = _DATE_MATH.match(value) if value.startswith("now") else None
    if math:
        now = datetime.now(UTC)
        if math.group(1):
            step = timedelta(seconds=int(math.group(2)) * _UNITS[math.group(3)])
            now = now + step if math.group(1) == "+" else now - step
        return now
    return _iso_date(value)


@functools.lru_cache(maxsize=1 << 18)
def _iso_date(value: str) -> datetime | None:
    """Parsed once per distinct string: every comparison, sort key and bucket asks again."""
    if not _ISO.match(value):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _millis(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(have: Any, want: Any, case_insensitive: bool = False) -> bool:
    if isinstance(have, bool) or isinstance(want, bool):
        return str(have).lower() == str(want).lower()
    if isinstance(have, str) and isinstance(want, str):
        if have == want or (case_insensitive and have.casefold() == want.casefold()):
            return True
        a, b = as_date(have), as_date(want)
        return a is not None and b is not None and a == b
    a_num, b_num = _number(have), _number(want)
    if a_num is not None and b_num is not None:
        return a_num == b_num
    day = as_date(have)
    return day is not None and isinstance(want, int | float) and _millis(day) == int(want)


def _order(have: Any, bound: Any) -> int | None:
    """-1, 0, 1 comparing a document value with a range bound; None when they cannot be compared."""
    a_date = as_date(have)
    if a_date is not None:
        b_date = as_date(bound)
        if b_date is None and isinstance(bound, int | float) and not isinstance(bound, bool):
            b_date = datetime.fromtimestamp(bound / 1000, UTC)
        if b_date is None:
            return None
        return (a_date > b_date) - (a_date < b_date)
    a_num, b_num = _number(have), _number(bound)
    if a_num is not None and b_num is not None:
        return (a_num > b_num) - (a_num < b_num)
    if isinstance(have, str) and isinstance(bound, str):
        return (have > bound) - (have < bound)
    return None


# -- queries -----------------------------------------------------------------------------------------------

Test = Callable[[Doc], bool]


def compile_query(query: Any) -> Test:
    """A query clause as a predicate over documents; QueryError for what Elasticsearch would refuse."""
    if not isinstance(query, dict) or len(query) != 1:
        raise QueryError("[_na] query malformed, must start with start_object and have exactly one clause")
    kind, spec = next(iter(query.items()))
    build = _CLAUSES.get(kind)
    if build is None:
        raise QueryError(f"unknown query [{kind}]", "parsing_exception")
    return build(spec)


def _one_field(kind: str, spec: Any) -> tuple[str, Any]:
    if not isinstance(spec, dict):
        raise QueryError(f"[{kind}] query malformed, no start_object after query name")
    fields = [(k, v) for k, v in spec.items() if k not in ("boost", "_name")]
    if len(fields) != 1:
        raise QueryError(f"[{kind}] query doesn't support multiple fields, found [{', '.join(k for k, _ in fields)}]")
    return fields[0]


def _match_all(_spec: Any) -> Test:
    return lambda _d: True


def _match_none(_spec: Any) -> Test:
    return lambda _d: False


def _clauses(spec: Mapping[str, Any], name: str) -> list[Test]:
    given = spec.get(name, [])
    return [compile_query(q) for q in (given if isinstance(given, list) else [given])]


def _bool(spec: Any) -> Test:
    if not isinstance(spec, dict):
        raise QueryError("[bool] query malformed")
    unknown = sorted(set(spec) - {"must", "filter", "should", "must_not", "minimum_should_match", "boost", "_name"})
    if unknown:
        raise QueryError(f"[bool] query does not support [{unknown[0]}]")
    must = _clauses(spec, "must") + _clauses(spec, "filter")
    should, must_not = _clauses(spec, "should"), _clauses(spec, "must_not")
    wanted = spec.get("minimum_should_match")
    if wanted is None:
        least = 0 if must else (1 if should else 0)
    elif isinstance(wanted, int) or (isinstance(wanted, str) and wanted.lstrip("-").isdigit()):
        least = int(wanted)
        least = least if least >= 0 else max(len(should) + least, 0)
    else:
        raise QueryError(f"minimum_should_match [{wanted}]: only whole numbers are supported by this double")

    def test(doc: Doc) -> bool:
        if not all(t(doc) for t in must) or any(t(doc) for t in must_not):
            return False
        return least == 0 or sum(1 for t in should if t(doc)) >= least

    return test


def _term(spec: Any) -> Test:
    field, wanted = _one_field("term", spec)
    insensitive = False
    if isinstance(wanted, dict):
        insensitive = bool(wanted.get("case_insensitive", False))
        if "value" not in wanted:
            raise QueryError("[term] query requires a value")
        wanted = wanted["value"]
    if isinstance(wanted, list | dict):
        raise QueryError(f"[term] query does not support array of values for [{field}]")
    return lambda d: any(_equal(v, wanted, insensitive) for v in field_values(d, field))


def _terms(spec: Any) -> Test:
    field, wanted = _one_field("terms", spec)
    if not isinstance(wanted, list):
        raise QueryError(f"[terms] query requires an array of values for [{field}]")
    return lambda d: any(_equal(v, w) for v in field_values(d, field) for w in wanted)


def _range(spec: Any) -> Test:
    field, bounds = _one_field("range", spec)
    if not isinstance(bounds, dict):
        raise QueryError(f"[range] query malformed for [{field}]")
    known = {"gt": (1,), "gte": (0, 1), "lt": (-1,), "lte": (-1, 0)}
    checks = [(known[op], value) for op, value in bounds.items() if op in known and value is not None]
    unknown = sorted(set(bounds) - set(known) - {"format", "time_zone", "boost", "relation"})
    if unknown:
        raise QueryError(f"[range] query does not support [{unknown[0]}]")

    def test(doc: Doc) -> bool:
        for value in field_values(doc, field):
            outcomes = [_order(value, bound) for _, bound in checks]
            if all(o is not None and o in ok for o, (ok, _) in zip(outcomes, checks, strict=True)):
                return True
        return False

    return test


def _exists(spec: Any) -> Test:
    if not isinstance(spec, dict) or not isinstance(spec.get("field"), str):
        raise QueryError("[exists] must be provided with a [field]")
    field = spec["field"]
    return lambda d: field_exists(d, field)


def _wildcard_rule(pattern: str, insensitive: bool) -> re.Pattern[str]:
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if insensitive else 0))


def _wildcard(spec: Any) -> Test:
    field, wanted = _one_field("wildcard", spec)
    insensitive = False
    if isinstance(wanted, dict):
        insensitive = bool(wanted.get("case_insensitive", False))
        wanted = wanted.get("value", wanted.get("wildcard"))
    if not isinstance(wanted, str):
        raise QueryError(f"[wildcard] query requires a string value for [{field}]")
    rule = _wildcard_rule(wanted, insensitive)
    return lambda d: any(isinstance(v, str) and rule.fullmatch(v) for v in field_values(d, field))


def _prefix(spec: Any) -> Test:
    field, wanted = _one_field("prefix", spec)
    insensitive = False
    if isinstance(wanted, dict):
        insensitive = bool(wanted.get("case_insensitive", False))
        wanted = wanted.get("value")
    if not isinstance(wanted, str):
        raise QueryError(f"[prefix] query requires a string value for [{field}]")
    if insensitive:
        low = wanted.casefold()
        return lambda d: any(isinstance(v, str) and v.casefold().startswith(low) for v in field_values(d, field))
    return lambda d: any(isinstance(v, str) and v.startswith(wanted) for v in field_values(d, field))


def _ids(spec: Any) -> Test:
    values = spec.get("values") if isinstance(spec, dict) else None
    if not isinstance(values, list):
        raise QueryError("[ids] query requires [values]")
    wanted = {str(v) for v in values}
    return lambda d: d.id in wanted


_WORD = re.compile(r"[^\W_]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")


def analyse(text: str) -> list[str]:
    """The standard analyser, near enough: Unicode words lower-cased, each CJK ideograph a word of its own."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        run = ""
        for ch in word:
            if _CJK.match(ch):
                if run:
                    out.append(run)
                    run = ""
                out.append(ch)
            else:
                run += ch
        if run:
            out.append(run)
    return out


def _match(spec: Any) -> Test:
    field, wanted = _one_field("match", spec)
    operator = "or"
    if isinstance(wanted, dict):
        operator = str(wanted.get("operator", "or")).lower()
        wanted = wanted.get("query")
    if wanted is None:
        raise QueryError("[match] requires query value")
    tokens = set(analyse(str(wanted)))
    if not tokens:
        return lambda _d: False

    def test(doc: Doc) -> bool:
        have = {t for v in field_values(doc, field) for t in analyse(str(v))}
        return tokens <= have if operator == "and" else bool(tokens & have)

    return test


_CLAUSES: dict[str, Callable[[Any], Test]] = {
    "match_all": _match_all,
    "match_none": _match_none,
    "bool": _bool,
    "term": _term,
    "terms": _terms,
    "range": _range,
    "exists": _exists,
    "wildcard": _wildcard,
    "prefix": _prefix,
    "ids": _ids,
    "match": _match,
}


# -- sorting -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SortField:
    field: str
    desc: bool
    missing_first: bool


def _sort_spec(spec: Any) -> list[_SortField]:
    if spec is None:
        return []
    out: list[_SortField] = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, str):
            field, order, missing = item, "desc" if item == "_score" else "asc", "_last"
        elif isinstance(item, dict) and len(item) == 1:
            field, options = next(iter(item.items()))
            if isinstance(options, str):
                order, missing = options, "_last"
            elif isinstance(options, dict):
                order, missing = str(options.get("order", "asc")), str(options.get("missing", "_last"))
            else:
                raise QueryError(f"[sort] malformed for [{field}]")
        else:
            raise QueryError(f"[sort] malformed: {item!r}")
        if order not in ("asc", "desc"):
            raise QueryError(f"Unknown SortOrder [{order}]", "illegal_argument_exception")
        if missing not in ("_last", "_first"):
            raise QueryError(f"[sort] missing [{missing}]: only _last and _first are supported by this double")
        out.append(_SortField(field, order == "desc", missing == "_first"))
    return out


def sort_value(value: Any) -> Any:
    """What a hit's `sort` array carries: dates as epoch milliseconds, whole numbers as ints."""
    when = as_date(value)
    if when is not None:
        return _millis(when)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sort_values(doc: Doc, sort: Sequence[_SortField]) -> list[Any]:
    out: list[Any] = []
    for s in sort:
        if s.field in ("_score", "_doc"):
            out.append(1.0 if s.field == "_score" else 0)
            continue
        values = [sort_value(v) for v in field_values(doc, s.field)]
        out.append((max(values) if s.desc else min(values)) if values else None)
    return out


def _compare_keys(a: Sequence[Any], b: Sequence[Any], sort: Sequence[_SortField]) -> int:
    for x, y, s in zip(a, b, sort, strict=True):
        if x is None or y is None:
            if x is None and y is None:
                continue
            # missing values go last (or first) whatever the order
            return (1 if x is None else -1) * (-1 if s.missing_first else 1)
        left, right = (str(x), str(y)) if isinstance(x, str) != isinstance(y, str) else (x, y)
        c = int((left > right) - (left < right))
        if c:
            return -c if s.desc else c
    return 0


# -- aggregations ------------------------------------------------------------------------------------------


def aggregate(aggs: Any, docs: Sequence[Doc]) -> dict[str, Any]:
    if not isinstance(aggs, dict):
        raise QueryError("Expected [START_OBJECT] under [aggs]")
    out: dict[str, Any] = {}
    for name, spec in aggs.items():
        if not isinstance(spec, dict):
            raise QueryError(f"Expected [START_OBJECT] under [{name}]")
        subs = spec.get("aggs", spec.get("aggregations"))
        kinds = [k for k in spec if k not in ("aggs", "aggregations", "meta")]
        if len(kinds) != 1:
            raise QueryError(f"Expected exactly one aggregation type for [{name}], found {kinds}")
        kind = kinds[0]
        build = _AGGS.get(kind)
        if build is None:
            raise QueryError(f"Unknown aggregation type [{kind}] did you mean [terms]?", "x_content_parse_exception")
        out[name] = build(spec[kind], docs, subs)
    return out


def _field_of(kind: str, spec: Any) -> str:
    if not isinstance(spec, dict) or not isinstance(spec.get("field"), str):
        raise QueryError(f"Required one of fields [field, script], but none were specified for [{kind}]")
    return str(spec["field"])


def _with_subs(bucket: dict[str, Any], docs: Sequence[Doc], subs: Any) -> dict[str, Any]:
    if subs:
        bucket.update(aggregate(subs, docs))
    return bucket


def _bucket_key(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool):
        return (1 if value else 0), str(value).lower()
    when = as_date(value)
    if when is not None:
        return _millis(when), when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, float) and value.is_integer():
        return int(value), None
    return value, None


def _terms_agg(spec: Any, docs: Sequence[Doc], subs: Any) -> dict[str, Any]:
    field = _field_of("terms", spec)
    size = _int(spec.get("size", 10), "size")
    min_count = _int(spec.get("min_doc_count", 1), "min_doc_count")
    missing = spec.get("missing")
    groups: dict[Any, tuple[str | None, list[Doc]]] = {}
    for doc in docs:
        values = field_values(doc, field)
        if not values and missing is not None:
            values = [missing]
        for key, shown in dict(_bucket_key(v) for v in values).items():  # a document counts once per term
            groups.setdefault(key, (shown, []))[1].append(doc)
    order = spec.get("order", {"_count": "desc"})
    orders = order if isinstance(order, list) else [order]
    ranked = list(groups.items())

    def cmp(a: tuple[Any, tuple[str | None, list[Doc]]], b: tuple[Any, tuple[str | None, list[Doc]]]) -> int:
        for rule in [*orders, {"_key": "asc"}]:
            ((what, direction),) = rule.items()
            if what == "_count":
                x, y = len(a[1][1]), len(b[1][1])
            elif what == "_key":
                x, y = a[0], b[0]
            else:
                raise QueryError(f"Invalid aggregation order path [{what}]: only _count and _key are supported here")
            c = (x > y) - (x < y)
            if c:
                return -c if direction == "desc" else c
        return 0

    ranked.sort(key=cmp_to_key(cmp))
    ranked = [r for r in ranked if len(r[1][1]) >= min_count]
    shown_buckets = ranked[:size]
    buckets = []
    for key, (as_string, members) in shown_buckets:
        bucket: dict[str, Any] = {"key": key, "doc_count": len(members)}
        if as_string is not None:
            bucket["key_as_string"] = as_string
        buckets.append(_with_subs(bucket, members, subs))
    others = sum(len(m) for _, (_, m) in ranked[size:])
    return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": others, "buckets": buckets}


def _filter_agg(spec: Any, docs: Sequence[Doc], subs: Any) -> dict[str, Any]:
    test = compile_query(spec)
    members = [d for d in docs if test(d)]
    return _with_subs({"doc_count": len(members)}, members, subs)


def _filters_agg(spec: Any, docs: Sequence[Doc], subs: Any) -> dict[str, Any]:
    named = spec.get("filters") if isinstance(spec, dict) else None
    if not isinstance(named, dict):
        raise QueryError("[filters] requires named filters in this double")
    return {"buckets": {name: _filter_agg(q, docs, subs) for name, q in named.items()}}


Agg = Callable[[Any, Sequence[Doc], Any], dict[str, Any]]


def _metric(reduce: Callable[[list[float]], float | None], dated: bool) -> Agg:
    def agg(spec: Any, docs: Sequence[Doc], _subs: Any) -> dict[str, Any]:
        field = _field_of("metric", spec)
        raw = [v for d in docs for v in field_values(d, field)]
        dates = [as_date(v) for v in raw]
        is_date = dated and bool(raw) and all(x is not None for x in dates)
        numbers = [float(_millis(x)) for x in dates if x is not None] if is_date else [_number(v) for v in raw]
        value = reduce([n for n in numbers if n is not None])
        out: dict[str, Any] = {"value": value}
        if is_date and value is not None:
            shown = datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="milliseconds")
            out["value_as_string"] = shown.replace("+00:00", "Z")
        return out

    return agg


def _cardinality(spec: Any, docs: Sequence[Doc], _subs: Any) -> dict[str, Any]:
    field = _field_of("cardinality", spec)
    return {"value": len({_bucket_key(v)[0] for d in docs for v in field_values(d, field)})}


def _value_count(spec: Any, docs: Sequence[Doc], _subs: Any) -> dict[str, Any]:
    field = _field_of("value_count", spec)
    return {"value": sum(len(field_values(d, field)) for d in docs)}


_AGGS: dict[str, Agg] = {
    "terms": _terms_agg,
    "filter": _filter_agg,
    "filters": _filters_agg,
    "max": _metric(lambda xs: max(xs) if xs else None, dated=True),
    "min": _metric(lambda xs: min(xs) if xs else None, dated=True),
    "sum": _metric(lambda xs: float(sum(xs)), dated=False),
    "avg": _metric(lambda xs: sum(xs) / len(xs) if xs else None, dated=False),
    "cardinality": _cardinality,
    "value_count": _value_count,
}
