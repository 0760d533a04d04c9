"""A tiny odds feed on loopback: the demo service's outbound HTTP peer.

``/lines`` answers at once; ``/drip`` sends its body one byte every 0.3 s for 30 s, the
kind of server that keeps ``requests``' per-read timeout alive forever.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/lines":
            body = json.dumps(
                {"game_id": "20260120_LAL_GSW", "spread": -3.5, "total": 228.5}
            ).encode()
            self._head(200, len(body))
            self.wfile.write(body)
        elif self.path == "/drip":
            self._head(200, 100)
            try:
                for _ in range(100):
                    self.wfile.write(b".")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass  # the client gave up: what the demo wants to show
        else:
            self._head(404, 0)

    def _head(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Peer:
    """``with Peer() as peer: peer.url``."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Peer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
