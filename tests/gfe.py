"""A stand-in for Cloud Run's front end (GFE), on loopback, for the Cloud Run tests.

What it does, as ``deploy/README.md`` documents the real one: terminates TLS (a trustme
certificate), then proxies each request over plain HTTP/1.1 to the service, appending the
client's address to ``X-Forwarded-For`` (a client-supplied value stays to its left) and
setting ``X-Forwarded-Proto: https``. It connects to the service from
:data:`FRONT_END_ADDRESS`, a loopback address of its own, so that the service can tell
the front end (trusted) from a client connecting directly from ``127.0.0.1`` (not
trusted): on Cloud Run that address is link-local (``BASTION_TRUSTED_PROXIES=cloudrun``);
here the tests trust ``127.0.0.2`` in its place, since no test may bind 169.254.0.0/16.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FRONT_END_ADDRESS = "127.0.0.2"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def _handler(upstream_port: int) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            client = self.client_address[0]
            prior = ", ".join(self.headers.get_all("X-Forwarded-For") or [])
            skip = HOP_BY_HOP | {"x-forwarded-for", "x-forwarded-proto", "content-length"}
            upstream = http.client.HTTPConnection(
                "127.0.0.1", upstream_port, timeout=30, source_address=(FRONT_END_ADDRESS, 0)
            )
            try:
                upstream.putrequest(
                    self.command, self.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in self.headers.items():
                    if name.lower() not in skip:
                        upstream.putheader(name, value)
                upstream.putheader("X-Forwarded-For", f"{prior}, {client}" if prior else client)
                upstream.putheader("X-Forwarded-Proto", "https")
                if body is not None:
                    upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders(body)
                response = upstream.getresponse()
                data = response.read()
            finally:
                upstream.close()
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_OPTIONS = do_PUT = do_DELETE = forward

    return Forward


@contextlib.contextmanager
def front_end(upstream_port: int, cert: Path, key: Path) -> Iterator[str]:
    """Serve HTTPS on a free loopback port in front of ``127.0.0.1:upstream_port``;
    yields the front end's base URL (``https://127.0.0.1:PORT``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream_port))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
