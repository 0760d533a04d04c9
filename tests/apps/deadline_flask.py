"""Flask app for the deadline tests: fast, CPU-bound, Python sleeps, socket reads, streams.

Run under gunicorn by tests/middleware/test_deadline_servers.py with ``BASTION_DEADLINE*`` in the
environment. Work lengths come from ``?s=`` so the tests keep them short.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

from flask import Flask, Response, request

from bastion.middleware.deadline import remaining
from bastion.middleware.deadline.wsgi import DeadlineMiddleware

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

app = Flask(__name__)


def _seconds() -> float:
    return float(request.args.get("s", "2.0"))


@app.get("/fast")
def fast() -> str:
    return "ok"


@app.get("/cpu")
def cpu_loop() -> str:
    end = time.monotonic() + _seconds()
    n = 0
    while time.monotonic() < end:
        n += 1
    return f"done {n}"


@app.get("/sleep")
def python_sleeps() -> str:
    end = time.monotonic() + _seconds()
    while time.monotonic() < end:
        time.sleep(0.01)
    return "slept"


@app.get("/socket")
def socket_read() -> str:
    """Read from a peer that answers only after ``s`` seconds. With ``?bounded=1`` the
    read is given the remaining budget as its timeout, the way the outbound
    instrumentors do; without it the read blocks in C until the peer answers."""
    ours, peer = socket.socketpair()
    delay = _seconds()
    threading.Timer(delay, peer.sendall, args=(b"x",)).start()
    try:
        if request.args.get("bounded"):
            ours.settimeout(remaining())
        return ours.recv(1).decode()
    finally:
        ours.close()
        threading.Timer(delay + 0.1, peer.close).start()


@app.get("/stream")
def stream() -> Response:
    """A first chunk at once, then one every 20 ms for ``s`` seconds."""
    end = time.monotonic() + _seconds()

    def chunks() -> Iterator[str]:
        yield "first\n"
        while time.monotonic() < end:
            time.sleep(0.02)
            yield ".\n"

    return Response(chunks(), mimetype="text/plain")


@app.get("/stream-late")
def stream_late() -> Response:
    """Nothing for ``s`` seconds, then the body: the headers would go out late."""
    delay = _seconds()

    def chunks() -> Iterator[str]:
        end = time.monotonic() + delay
        while time.monotonic() < end:
            time.sleep(0.02)
        yield "late body\n"

    return Response(chunks(), mimetype="text/plain")


@app.get("/at")
def finish_at() -> str:
    """Busy until ``s`` seconds after the request started (the race test)."""
    end = float(request.environ["bastion.test.start"]) + _seconds()
    while time.monotonic() < end:
        pass
    return "finished"


@app.get("/remaining")
def show_remaining() -> str:
    left = remaining()
    return "none" if left is None else f"{left:.6f}"


_wrapped = DeadlineMiddleware.from_settings(app.wsgi_app)


def _stamp(environ, start_response):  # type: ignore[no-untyped-def]
    environ["bastion.test.start"] = time.monotonic()
    return _wrapped(environ, start_response)


app.wsgi_app = _stamp  # type: ignore[method-assign]


def _timed(environ, start_response):  # type: ignore[no-untyped-def]
    """For the load test: outside Bastion, stamp how long the server took to start the
    response (queueing in gunicorn excluded), so "in time" is judged server-side."""
    started = time.monotonic()

    def timed_start_response(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
        elapsed = time.monotonic() - started
        return start_response(status, [*headers, ("X-Test-Elapsed", f"{elapsed:.4f}")], exc_info)

    return app(environ, timed_start_response)


timed_app = _timed
