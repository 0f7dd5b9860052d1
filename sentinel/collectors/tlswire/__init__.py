"""Sans-IO TLS handshake pieces: build ClientHellos, parse server flights. Bytes in, typed results out.

Nothing here opens a socket, so the active `tls_scan` probe, capture readers and fuzz tests share it.
"""

from __future__ import annotations

from sentinel.collectors.tlswire.hello import (
    ClientHello,
    ClientHelloSpec,
    build_client_hello,
    parse_client_hello_body,
    parse_client_hello_record,
)
from sentinel.collectors.tlswire.records import TlsParseError, TlsVersion, version_label
from sentinel.collectors.tlswire.server import (
    Alert,
    ServerFlight,
    ServerFlightParser,
    ServerHello,
    parse_server_flight,
    parse_server_hello_body,
)
from sentinel.collectors.tlswire.suites import SUITES, CipherSuite, WeakFamily, suite_name

__all__ = [
    "SUITES",
    "Alert",
    "CipherSuite",
    "ClientHello",
    "ClientHelloSpec",
    "ServerFlight",
    "ServerFlightParser",
    "ServerHello",
    "TlsParseError",
    "TlsVersion",
    "WeakFamily",
    "build_client_hello",
    "parse_client_hello_body",
    "parse_client_hello_record",
    "parse_server_flight",
    "parse_server_hello_body",
    "suite_name",
    "version_label",
]
