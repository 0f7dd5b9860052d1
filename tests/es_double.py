"""A test double of Elasticsearch: a real HTTP server on loopback speaking the REST endpoints Sentinel uses.

It answers like an 8.x/9.x cluster (the `X-Elastic-Product` header and the vendored JSON content type the
official client checks) and keeps its state in memory across stop/start, so a test can take the server away
(refused connections) and bring it back on the same port. Faults are injected through `EsDouble.faults`.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ItemRule = Callable[[str, str | None, dict[str, Any]], int | None]


@dataclass
class Faults:
    """What the double does wrong. Lists are consumed one entry per request/attempt."""

    bulk_status: list[int] = field(default_factory=list)  # whole _bulk request answered with this status
    item_status: dict[str, list[int]] = field(default_factory=dict)  # doc _id -> per-attempt item status
    item_rule: ItemRule | None = None  # (index, _id, source) -> status or None
    delay: float = 0.0  # seconds before answering any request
    delay_after_bulk: float = 0.0  # seconds to wait after applying a bulk, before answering it
    impostor: bool = False  # answer like a non-Elasticsearch server: no product header, bulk applied anyway
    garbled_bulk: bool = False  # answer _bulk with 200 and a body that is not a bulk response


@dataclass
class Index:
    name: str
    data_stream: bool = False
    # _id -> (version, source); sources are kept as the raw JSON bytes and parsed when read, which keeps
    # the double fast enough for the shipping benchmark.
    docs: dict[str, tuple[int, bytes]] = field(default_factory=dict)


class EsState:
    """The cluster's contents, shared by every server incarnation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.indices: dict[str, Index] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.ilm_policies: dict[str, dict[str, Any]] = {}
        self.puts: list[str] = []  # every PUT path, so tests can see what setup changed
        self.bulk_requests = 0
        self.bulk_items = 0
        self._auto_id = 0

    def template_for(self, index: str) -> dict[str, Any] | None:
        best: tuple[int, dict[str, Any]] | None = None
        for body in self.index_templates.values():
            for pattern in body.get("index_patterns", []):
                if re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), index):
                    priority = int(body.get("priority", 0))
                    if best is None or priority > best[0]:
                        best = (priority, body)
        return best[1] if best else None

    def ensure_index(self, name: str) -> Index:
        found = self.indices.get(name)
        if found is None:
            template = self.template_for(name)
            found = Index(name, data_stream=bool(template and "data_stream" in template))
            self.indices[name] = found
        return found

    def matching(self, expression: str) -> list[Index]:
        """The indices an index expression names: comma-separated names and `*` patterns, as Elasticsearch reads it."""
        out: list[Index] = []
        for part in expression.split(","):
            rule = re.escape(part).replace(r"\*", ".*")
            out += [i for name, i in sorted(self.indices.items()) if re.fullmatch(rule, name) and i not in out]
        return out

    def next_id(self) -> str:
        self._auto_id += 1
        return f"auto-{self._auto_id}"


class EsDouble:
    """Start with `with EsDouble() as es:`; `es.url` is the cluster address."""

    def __init__(self, port: int = 0, api_key: str | None = None, host: str = "127.0.0.1") -> None:
        """`host`: where it listens (a lab bridge address, for instances inside network namespaces)."""
        self.host = host
        self.state = EsState()
        self.faults = Faults()
        self.api_key = api_key
        self.requests: list[tuple[str, str]] = []
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.bulk_applied = threading.Event()
        self.connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def start(self) -> EsDouble:
        double = self

        class Handler(_Handler):
            es = double

        self._server = _QuietServer((self.host, self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take the server away: connections are refused until `start()` (same port, same contents)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # A stopped cluster also drops the keep-alive connections the client holds.
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> EsDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read ----------------------------------------------------------------------
    def docs(self, index: str) -> dict[str, dict[str, Any]]:
        """The documents of an index, or of every index an expression names (`a,b`, `sentinel-findings-latest-*`):
        document ids are per index, so a pattern over several indices keys them as `index/_id`."""
        with self.state.lock:
            found = self.state.matching(index)
            if len(found) == 1 and found[0].name == index:
                return {k: json.loads(v[1]) for k, v in found[0].docs.items()}
            return {f"{i.name}/{k}": json.loads(v[1]) for i in found for k, v in i.docs.items()}

    def count(self, index: str) -> int:
        return len(self.docs(index))

    def indices(self, pattern: str = "*") -> list[str]:
        with self.state.lock:
            return sorted(i.name for i in self.state.matching(pattern))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that vanish mid-answer (killed, timed out) are part of the tests, not errors to print."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handle_error(request, client_address)


_Status = int
_Body = Any


class _Handler(BaseHTTPRequestHandler):
    es: EsDouble
    protocol_version = "HTTP/1.1"
    # One buffered write per response, no Nagle: otherwise delayed ACKs add 40 ms to every small answer.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.es.connections.add(self.connection)

    def finish(self) -> None:
        self.es.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        return None

    # -- plumbing -----------------------------------------------------------------------------
    def _reply(self, status: int, body: Any, head: bool = False) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if not self.es.faults.impostor:
            self.send_header("X-Elastic-Product", "Elasticsearch")
        accept = self.headers.get("Accept", "")
        match = re.search(r"compatible-with=(\d+)", accept)
        ctype = f"application/vnd.elasticsearch+json;compatible-with={match.group(1)}" if match else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        es = self.es
        raw = self._body()
        parts = urlsplit(self.path)
        path = [unquote(p) for p in parts.path.split("/") if p]  # ids such as site:vantage:finding come quoted
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        es.requests.append((method, parts.path))
        if es.faults.delay:
            time.sleep(es.faults.delay)
        if es.api_key is not None and self.headers.get("Authorization") != f"ApiKey {es.api_key}":
            self._reply(401, _error(401, "security_exception", "missing authentication credentials"))
            return
        try:
            status, body = self._route(method, path, query, raw)
        except (ValueError, KeyError) as exc:
            status, body = 400, _error(400, "parse_exception", str(exc))
        self._reply(status, body, head=method == "HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- routes -------------------------------------------------------------------------------
    def _route(self, method: str, path: list[str], query: dict[str, str], raw: bytes) -> tuple[_Status, _Body]:
        state = self.es.state
        if not path:
            return 200, {
                "name": "es-double",
                "cluster_name": "sentinel-test",
                "version": {"number": "9.0.0", "build_flavor": "default", "lucene_version": "10.1.0"},
                "tagline": "You Know, for Search",
            }
        if path[-1] == "_bulk":
            return self._bulk(path[0] if len(path) == 2 else None, query, raw)
        head = path[0]
        if head in ("_component_template", "_index_template") and len(path) == 2:
            store = state.component_templates if head == "_component_template" else state.index_templates
            key = "component_templates" if head == "_component_template" else "index_templates"
            inner = "component_template" if head == "_component_template" else "index_template"
            return self._named(method, path, raw, store, lambda n, b: {key: [{"name": n, inner: b}]})
        if head == "_ilm" and len(path) == 3 and path[1] == "policy":
            return self._named(
                method, path, raw, state.ilm_policies, lambda n, b: {n: {"version": 1, "policy": b["policy"]}}
            )
        if head == "_data_stream" and len(path) == 2:
            return self._data_stream(method, path[1])
        if len(path) >= 2 and path[1] in ("_count", "_search"):
            return self._search(path[0], path[1], raw)
        if len(path) == 2 and path[1] == "_refresh":
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if len(path) == 3 and path[1] == "_doc" and method == "GET":
            with state.lock:
                index = state.indices.get(path[0])
                if index is None or path[2] not in index.docs:
                    return 404, {"_index": path[0], "_id": path[2], "found": False}
                version, raw = index.docs[path[2]]
            source = json.loads(raw)
            return 200, {"_index": path[0], "_id": path[2], "_version": version, "found": True, "_source": source}
        if len(path) == 1:
            return self._index(method, path[0])
        return 404, _error(404, "resource_not_found_exception", f"no handler for {method} /{'/'.join(path)}")

    def _named(
        self,
        method: str,
        path: list[str],
        raw: bytes,
        store: dict[str, dict[str, Any]],
        shape: Callable[[str, dict[str, Any]], Any],
    ) -> tuple[_Status, _Body]:
        name = path[-1]
        with self.es.state.lock:
            if method == "PUT":
                store[name] = json.loads(raw)
                self.es.state.puts.append("/" + "/".join(path))
                return 200, {"acknowledged": True}
            if method == "DELETE":
                return (200, {"acknowledged": True}) if store.pop(name, None) is not None else (404, None)
            if name not in store:
                return 404, _error(404, "resource_not_found_exception", f"{name} not found")
            return 200, shape(name, store[name])

    def _data_stream(self, method: str, name: str) -> tuple[_Status, _Body]:
        state = self.es.state
        with state.lock:
            found = state.indices.get(name)
            if method == "PUT":
                if found is not None:
                    return 400, _error(400, "resource_already_exists_exception", f"data_stream [{name}] already exists")
                template = state.template_for(name)
                if not template or "data_stream" not in template:
                    return 400, _error(400, "illegal_argument_exception", f"no matching index template for [{name}]")
                state.indices[name] = Index(name, data_stream=True)
                state.puts.append(f"/_data_stream/{name}")
                return 200, {"acknowledged": True}
            if found is None or not found.data_stream:
                return 404, _error(404, "index_not_found_exception", f"no such index [{name}]")
            return 200, {"data_streams": [{"name": name, "timestamp_field": {"name": "@timestamp"}}]}

    def _index(self, method: str, name: str) -> tuple[_Status, _Body]:
        state = self.es.state
        with state.lock:
            found = state.indices.get(name)
            if method == "PUT":
                if found is not None:
                    return 400, _error(400, "resource_already_exists_exception", f"index [{name}] already exists")
                state.ensure_index(name)
                state.puts.append(f"/{name}")
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}
            if found is None:
                return 404, _error(404, "index_not_found_exception", f"no such index [{name}]")
            return 200, {name: {"aliases": {}, "mappings": {}, "settings": {}}}

    def _search(self, name: str, what: str, raw: bytes) -> tuple[_Status, _Body]:
        # Queries, sorting, paging and aggregations as Elasticsearch evaluates them: tests/support/es_query.py.
        from tests.support import es_query

        body = json.loads(raw) if raw else {}
        with self.es.state.lock:  # the documents as they are now; evaluated outside the lock
            picked = es_query.pick(name, {i.name: i.docs for i in self.es.state.indices.values()})
        return es_query.respond(picked, what, body)

    def _bulk(self, default_index: str | None, query: dict[str, str], raw: bytes) -> tuple[_Status, _Body]:
        es = self.es
        if es.faults.bulk_status:
            status = es.faults.bulk_status.pop(0)
            return status, _error(status, "unavailable_shards_exception", "injected whole-request failure")
        lines = [line for line in raw.split(b"\n") if line.strip()]
        items: list[dict[str, Any]] = []
        errors = False
        state = es.state
        with state.lock:
            state.bulk_requests += 1
            position = 0
            while position < len(lines):
                action = json.loads(lines[position])
                op, meta = next(iter(action.items()))
                source = lines[position + 1] if op != "delete" else b"{}"
                position += 2 if op != "delete" else 1
                status, result = self._apply(op, meta, source, default_index)
                errors = errors or status >= 300
                items.append({op: {**result, "status": status}})
            state.bulk_items += len(items)
        es.bulk_applied.set()
        if es.faults.garbled_bulk:
            return 200, {"took": 1, "result": "not a bulk response"}
        if es.faults.delay_after_bulk:
            time.sleep(es.faults.delay_after_bulk)
        return 200, {"took": 1, "errors": errors, "items": items}

    def _apply(
        self, op: str, meta: dict[str, Any], source: bytes, default_index: str | None
    ) -> tuple[int, dict[str, Any]]:
        es, state = self.es, self.es.state
        name = meta.get("_index") or default_index or ""
        doc_id = meta.get("_id")
        base: dict[str, Any] = {"_index": name, "_id": doc_id}
        injected = es.faults.item_status.get(doc_id or "")
        status = injected.pop(0) if injected else None
        if status is None and es.faults.item_rule is not None:
            status = es.faults.item_rule(name, doc_id, json.loads(source))
        if status is not None:
            kind = {429: "es_rejected_execution_exception", 400: "mapper_parsing_exception"}.get(status, "injected")
            return status, {**base, "error": {"type": kind, "reason": f"injected {status}"}}
        if op == "delete":
            found = state.indices.get(name)
            if found is None or doc_id not in found.docs:
                return 404, {**base, "result": "not_found"}
            version = found.docs.pop(doc_id)[0] + 1
            return 200, {**base, "_version": version, "result": "deleted"}
        template = state.template_for(name)
        is_stream = bool(template and "data_stream" in template)
        if is_stream and op != "create":
            reason = "only write ops with an op_type of create are allowed in data streams"
            return 400, {**base, "error": {"type": "illegal_argument_exception", "reason": reason}}
        if is_stream and b'"@timestamp"' not in source:
            reason = "data stream timestamp field [@timestamp] is missing"
            return 400, {**base, "error": {"type": "document_parsing_exception", "reason": reason}}
        index = state.ensure_index(name)
        doc_id = doc_id or state.next_id()
        base["_id"] = doc_id
        current = index.docs.get(doc_id)
        if op == "create" and current is not None:
            reason = f"[{doc_id}]: version conflict, document already exists (current version [{current[0]}])"
            return 409, {**base, "error": {"type": "version_conflict_engine_exception", "reason": reason}}
        if op == "index" and meta.get("version_type") == "external":
            version = int(meta["version"])
            if current is not None and current[0] >= version:
                reason = f"[{doc_id}]: version conflict, current version [{current[0]}] is higher or equal"
                return 409, {**base, "error": {"type": "version_conflict_engine_exception", "reason": reason}}
        elif op in ("index", "create"):
            version = (current[0] + 1) if current else 1
        else:
            return 400, {**base, "error": {"type": "illegal_argument_exception", "reason": f"unsupported op {op}"}}
        index.docs[doc_id] = (version, source)
        return (200 if current else 201), {**base, "_version": version, "result": "updated" if current else "created"}


def _matches(source: dict[str, Any], term: dict[str, Any]) -> bool:
    for dotted, wanted in term.items():
        value: Any = source
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        expected = wanted.get("value") if isinstance(wanted, dict) else wanted
        if value != expected:
            return False
    return True


def _error(status: int, kind: str, reason: str) -> dict[str, Any]:
    return {
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    }


if __name__ == "__main__":  # `python -m tests.es_double [PORT]`: a double to point `sentinel es ...` at by hand
    double = EsDouble(int(sys.argv[1]) if len(sys.argv) > 1 else 9200).start()
    print(f"Elasticsearch double at {double.url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        double.stop()
