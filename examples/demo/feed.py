"""The external odds feed the scraper calls, faked on loopback (plain http and https).

* ``/odds/<date>``: the day's game lines, at once;
* ``/injuries``: answers after ``slow_seconds`` (longer than the scraper's read timeout);
* ``/live``: live lines, one byte every 0.3 s (2.4 s in all);
* ``/props`` (https): served with a certificate from a CA nobody trusts, which is why
  the legacy backfill turned verification off.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FeedServer

    def do_GET(self) -> None:
        if self.path.startswith("/odds/"):
            day = self.path.rsplit("/", 1)[1]
            lines = [
                {
                    "game_date": day,
                    "game_id": f"{day.replace('-', '')}_{away}_{home}",
                    "bookmaker": book,
                    "spread": spread,
                    "total": 224.5,
                }
                for away, home, spread in (("LAL", "GSW", -3.5), ("DEN", "BOS", 1.5))
                for book in ("draftkings", "fanduel")
            ]
            self._json(lines)
        elif self.path == "/injuries":
            time.sleep(self.server.slow_seconds)
            self._json([{"player_lookup": "jamalmurray", "status": "questionable"}])
        elif self.path == "/live":
            self._drip(b"[      ]", 0.3)
        elif self.path == "/props":
            self._json([{"player_lookup": "lebronjames", "line": 25.5}])
        else:
            self._json({"error": "not found"}, 404)

    def _drip(self, body: bytes, every: float) -> None:
        """One byte every ``every`` seconds: no read timeout ever fires, only a deadline."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(every)
        except OSError:
            pass  # the client gave up (a cut the demo shows)

    def _json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(value).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (a cut the demo shows)

    def log_message(self, *args: Any) -> None:
        pass


class _FeedServer(ThreadingHTTPServer):
    daemon_threads = True
    slow_seconds = 0.0


class Feed:
    """``with Feed(slow_seconds=0.8) as feed: feed.url, feed.https_url``."""

    def __init__(self, slow_seconds: float) -> None:
        self._servers = [_FeedServer(("127.0.0.1", 0), _Handler) for _ in range(2)]
        for server in self._servers:
            server.slow_seconds = slow_seconds
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        https = self._servers[1]
        https.socket = context.wrap_socket(https.socket, server_side=True)
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.https_url = f"https://127.0.0.1:{https.server_address[1]}"
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True) for s in self._servers
        ]

    def __enter__(self) -> Feed:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
