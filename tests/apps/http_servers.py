"""Misbehaving and well-behaved HTTP servers on loopback, for the outbound HTTP guard.

Each runs in daemon threads of the test process, on a free 127.0.0.1 port, over plain
TCP or TLS (pass an ``ssl.SSLContext``):

* :class:`DripServer` answers the headers (after ``header_delay``; or dripped too, with
  ``drip_head``), then sends the body one byte every ``interval`` seconds
  (Content-Length or chunked): the case per-read timeouts miss;
* :class:`SilentServer` accepts, reads the request and never answers;
* :class:`FullBacklogServer` never completes a connection (its backlog is full);
* :class:`AppServer` is a small keep-alive HTTP/1.1 server: ``/ok``, ``/headers``
  (echoes the request headers as JSON), ``/redirect?to=PATH`` (302),
  ``/drip-redirect`` (302 to a drip body on the same server) and ``/drip?n=COUNT&every=SECONDS``
  (COUNT bytes, one every SECONDS, default 40 and 0.5).

``python -m tests.apps.http_servers drip|silent|app PORT`` serves one in the foreground
(for the gunicorn test and the benchmark, which need it in another process).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit


class _SocketServer:
    """Accept loop in a thread; one thread per connection running :meth:`handle`."""

    def __init__(self, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self._listener = socket.create_server(("127.0.0.1", port))
        self._tls = tls
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> _SocketServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.close()

    def serve_forever(self) -> None:
        self._accept()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            with self._lock:
                self._connections.append(conn)
            self.handle(conn)
        except OSError:
            pass  # the client went away (or refused our certificate)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


class DripServer(_SocketServer):
    """Headers at once, then one body byte every ``interval`` seconds."""

    def __init__(
        self,
        interval: float = 0.5,
        length: int = 40,
        chunked: bool = False,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
        header_delay: float = 0.0,
        drip_head: bool = False,
    ) -> None:
        super().__init__(tls, port)
        self.header_delay = header_delay
        self.drip_head = drip_head
        self.interval = interval
        self.length = length
        self.chunked = chunked
        self.bytes_sent = 0

    def handle(self, conn: socket.socket) -> None:
        self._read_request(conn)
        if self._stopping.wait(self.header_delay):
            return
        framing = (
            b"Transfer-Encoding: chunked" if self.chunked else b"Content-Length: %d" % self.length
        )
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + framing + b"\r\n\r\n"
        if self.drip_head:  # the status line and headers one byte at a time, too
            for byte in head:
                if self._stopping.wait(self.interval):
                    return
                conn.sendall(bytes([byte]))
        else:
            conn.sendall(head)
        for _ in range(self.length):
            if self._stopping.wait(self.interval):
                return
            conn.sendall(b"1\r\nx\r\n" if self.chunked else b"x")
            self.bytes_sent += 1
        if self.chunked:
            conn.sendall(b"0\r\n\r\n")


class SilentServer(_SocketServer):
    """Reads the request, then holds the connection open without a word."""

    def handle(self, conn: socket.socket) -> None:
        self._read_request(conn)
        self._stopping.wait()


class FullBacklogServer:
    """A listener whose accept queue is full and never drained: a new connection's SYN
    is dropped, so connecting hangs (Linux), as with a host that has gone away."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FullBacklogServer:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._fillers.append(filler)
        time.sleep(0.05)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sock in [*self._fillers, self._listener]:
            sock.close()


class _AppHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/headers":
            self._send(200, json.dumps(dict(self.headers.items())).encode(), "application/json")
        elif parts.path == "/redirect":
            target = parse_qs(parts.query).get("to", ["/ok"])[0]
            self._send(302, b"", location=target)
        elif parts.path == "/drip-redirect":
            self._send(302, b"", location="/drip")
        elif parts.path == "/drip":
            query = parse_qs(parts.query)
            count = int(query.get("n", ["40"])[0])
            every = float(query.get("every", ["0.5"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(count))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client was cut off: expected
                for _ in range(count):
                    time.sleep(every)
                    self.wfile.write(b"x")
                    self.wfile.flush()
        elif parts.path == "/slow":  # answers after ?seconds=, all at once
            time.sleep(float(parse_qs(parts.query).get("seconds", ["1"])[0]))
            self._send(200, b"slow")
        else:
            self._send(200, b"ok")

    def _send(
        self, status: int, body: bytes, kind: str = "text/plain", location: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(body)


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def verify_request(self, request: object, client_address: object) -> bool:
        self.connections += 1
        return True


class AppServer:
    """A keep-alive HTTP/1.1 server (http.server) in a thread; TLS when given a context.

    ``connections`` counts accepted connections (TLS ones after the handshake).
    """

    def __init__(self, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self._server = _CountingServer(("127.0.0.1", port), _AppHandler)
        self._tls = tls
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return self._server.connections

    def __enter__(self) -> AppServer:
        # serve_forever's default poll of 0.5 s is how long shutdown() waits in __exit__.
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    servers = {"drip": DripServer, "silent": SilentServer, "app": AppServer}
    servers[kind](port=port).serve_forever()  # type: ignore[abstract]
