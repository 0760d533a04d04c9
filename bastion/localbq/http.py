"""The HTTP face: BigQuery v2 REST routes, fault rules, the request log, control routes.

Each accepted socket gets ``TCP_NODELAY``: ``BaseHTTPRequestHandler`` writes headers
and body in separate sends, and on a keep-alive connection Nagle's algorithm plus
delayed ACKs would otherwise hold every call for a delayed ACK (figures:
benchmarks/RESULTS.md, The local BigQuery server).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .errors import REASON_FOR_STATUS, BigQueryError
from .requestlog import RecordedRequest

if TYPE_CHECKING:
    from .server import LocalBigQuery

Answer = tuple[int, Any]
Route = tuple[str, re.Pattern[str], str, Callable[..., Answer]]

_P = r"(?P<project>[^/]+)"
_D = r"(?P<dataset>[^/]+)"
_T = r"(?P<table>[^/]+)"
_J = r"(?P<job>[^/]+)"
_BASE = "/bigquery/v2/projects/" + _P


class BigQueryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: LocalBigQuery, nodelay: bool = True) -> None:
        self.app = app
        self.nodelay = nodelay
        super().__init__(address, Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: BigQueryHTTPServer
    server_version = "bqserver/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        body: Any = None
        if raw and content_type.startswith("application/json"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        endpoint, handler, groups = app.routes.match(method, url.path)
        status, answer, headers = 500, None, {}
        try:
            if handler is None:
                raise BigQueryError(404, "notFound", f"Not found: {method} {url.path}")
            if body is None and raw and not url.path.startswith("/upload/"):
                raise BigQueryError(400, "parseError", "Parse Error")
            if body is not None and not isinstance(body, dict):
                raise BigQueryError(400, "invalid", "The request body must be a JSON object")
            sql = _sql_of(body)
            rule = app.rules.for_request(endpoint, url.path, sql) if endpoint else None
            if rule is not None:
                if rule.delay_seconds:
                    time.sleep(rule.delay_seconds)
                if rule.status is not None:
                    reason = rule.reason or REASON_FOR_STATUS.get(rule.status, "backendError")
                    raise BigQueryError(
                        rule.status, reason, rule.message or f"bqserver rule {rule.id}"
                    )
            request = Request(method, url.path, params, body, raw, content_type, groups)
            request.headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = handler(request)
            headers = request.response_headers
        except BigQueryError as exc:
            status, answer = exc.status, exc.body()
        except Exception as exc:  # never leave the client hanging on a server bug
            app.logger.exception("bqserver: error answering %s %s", method, url.path)
            error = BigQueryError(500, "internalError", f"bqserver: {exc!r}")
            status, answer = 500, error.body()
        if not endpoint.startswith("control."):  # the log is for BigQuery API calls
            app.requests.add(
                RecordedRequest(time.time(), method, url.path, endpoint, params, body, status)
            )
        self._send(status, answer, headers)

    def _send(self, status: int, answer: Any, headers: dict[str, str]) -> None:
        payload = b"" if answer is None else json.dumps(answer).encode()
        try:
            self.send_response(status)
            if answer is not None:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its own timeout)


class Request:
    """What a route handler sees."""

    def __init__(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: Any,
        raw: bytes,
        content_type: str,
        groups: dict[str, str],
    ) -> None:
        self.method = method
        self.path = path
        self.params = params
        self.body = body if body is not None else {}
        self.raw = raw
        self.content_type = content_type
        self.groups = groups
        self.response_headers: dict[str, str] = {}
        self.headers: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        return self.groups[name]


def _sql_of(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    query = body.get("query")
    if isinstance(query, str):
        return query
    nested = body.get("configuration", {}).get("query", {}).get("query")
    return nested if isinstance(nested, str) else None


class Routes:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, endpoint: str, handler: Callable[..., Answer]) -> None:
        self._routes.append((method, re.compile(pattern + "$"), endpoint, handler))

    def match(
        self, method: str, path: str
    ) -> tuple[str, Callable[..., Answer] | None, dict[str, str]]:
        for route_method, pattern, endpoint, handler in self._routes:
            if route_method == method:
                found = pattern.match(path)
                if found:
                    return endpoint, handler, found.groupdict()
        return "", None, {}


BASE = _BASE
DATASET = _BASE + "/datasets/" + _D
TABLE = DATASET + "/tables/" + _T
ROUTINE = DATASET + "/routines/(?P<routine>[^/]+)"
JOB = _BASE + "/jobs/" + _J
QUERY = _BASE + "/queries/" + _J
UPLOAD = "/upload/bigquery/v2/projects/" + _P + "/jobs"
