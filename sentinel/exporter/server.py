"""The HTTP listener of `sentinel serve`: `/metrics`, `/probe`, `/-/healthy`, and an index page."""

from __future__ import annotations

import gzip
import logging
import socket
import sqlite3
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from sentinel.exporter.blackbox import ProbeRequestError, probe_families
from sentinel.exporter.collector import StoreExporter
from sentinel.exporter.family import CONTENT_TYPE, render_families

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9108"

INDEX = b"""<!doctype html><html><head><meta charset="utf-8"><title>Sentinel exporter</title></head><body>
<h1>Sentinel exporter</h1><ul><li><a href="/metrics">/metrics</a>: the estate, read from the store at scrape time</li>
<li>/probe?target=SYSTEM_OR_URL&amp;module=http_2xx: blackbox-exporter-compatible, from stored observations</li>
</ul></body></html>
"""


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `:PORT` (all interfaces must be asked for explicitly with 0.0.0.0)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"'{text}' is not HOST:PORT (for example {DEFAULT_LISTEN})")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], exporter: StoreExporter) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.exporter = exporter

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = CONTENT_TYPE) -> None:
        gzipped = len(body) > 1024 and "gzip" in self.headers.get("Accept-Encoding", "")
        if gzipped:
            body = gzip.compress(body, compresslevel=1)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, message: str) -> None:
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        exporter = self.server.exporter
        try:
            if url.path == "/metrics":
                self._send(HTTPStatus.OK, exporter.render())
            elif url.path == "/probe":
                query = parse_qs(url.query)
                target = query.get("target", [""])[0]
                module = query.get("module", [""])[0]
                with exporter.lock:
                    families = probe_families(exporter.store, target, module)
                self._send(HTTPStatus.OK, render_families(families))
            elif url.path == "/-/healthy":
                self._text(HTTPStatus.OK, "OK")
            elif url.path == "/":
                self._send(HTTPStatus.OK, INDEX, "text/html; charset=utf-8")
            else:
                self._text(HTTPStatus.NOT_FOUND, f"{url.path}: not found (try /metrics or /probe)")
        except ProbeRequestError as exc:
            self._text(exc.status, exc.message)
        except sqlite3.Error as exc:
            log.error("reading the store for %s failed: %s", url.path, exc)
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, f"the store cannot be read: {exc}")


def start_server(listen: str, exporter: StoreExporter) -> ExporterServer:
    """Bind (raising OSError if the address is taken) without serving yet; call `serve_forever()`."""
    return ExporterServer(parse_listen(listen), exporter)
