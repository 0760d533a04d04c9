"""Apps for the deadline's safety tests (tests/middleware/test_deadline_safety.py): the ways an
app, a client or a busy service once made the deadline guard hang, poison or kill a
worker, written as a user's service would be.

* ``flask_app``: a Flask service wrapped by ``protect()`` (plus the outbound HTTP
  guard) with a logging view, a view that echoes a query parameter into a header, a
  teardown handler that may fail, before/after-request hooks that may overrun, a CPU
  loop, and a coordinator that fans out through a ``ThreadPoolExecutor`` and a thread.
* ``wsgi_app``: a plain WSGI app that may raise, wrapped by ``DeadlineMiddleware``.
* ``asgi_app``: a Starlette app whose async endpoint blocks the event loop.

Every answer carries ``X-Test-Elapsed`` (seconds from the server's call to the start of
the response, stamped outside Bastion) and the worker thread's name, so the tests judge
time server-side and can tell the threads apart.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from flask import Flask, Response, abort, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bastion.instrumentation.http import HttpInstrumentor
from bastion.middleware import protect
from bastion.middleware.deadline import remaining
from bastion.middleware.deadline.wsgi import DeadlineMiddleware

logging.basicConfig(
    level=logging.INFO,
    format="%(levelname)s %(name)s %(threadName)s %(message)s",
)
log = logging.getLogger("hostile")

flask_app = Flask(__name__)
_pool = ThreadPoolExecutor(4)


def _seconds() -> float:
    return float(request.args.get("s", "1"))


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@flask_app.get("/fast")
def fast() -> str:
    return "ok"


@flask_app.get("/logs")
def logs() -> str:
    log.info("handling %s", request.full_path)  # a line per request, through a handler lock
    return "logged"


@flask_app.get("/remaining")
def show_remaining() -> str:
    left = remaining()
    return "none" if left is None else f"{left:.6f}"


@flask_app.get("/echo-header")
def echo_header() -> Response:
    response = Response("echoed")
    response.headers["X-Echo"] = request.args.get("name", "")  # %01: gunicorn refuses it
    return response


@flask_app.get("/cpu")
def cpu() -> str:
    _spin(_seconds())
    return "done"


@flask_app.get("/sleep")
def python_sleeps() -> str:
    end = time.monotonic() + _seconds()
    while time.monotonic() < end:
        time.sleep(0.01)
    return "slept"


@flask_app.get("/stream")
def stream() -> Response:
    """``?late=1``: nothing for ``s`` seconds, then the body; else chunks for ``s``."""
    seconds, late = _seconds(), request.args.get("late") == "1"

    def chunks() -> Iterable[str]:
        end = time.monotonic() + seconds
        if not late:
            yield "first\n"
        while time.monotonic() < end:
            time.sleep(0.02)
            if not late:
                yield ".\n"
        yield "end\n"

    return Response(chunks(), mimetype="text/plain")


@flask_app.get("/raise")
def raise_error() -> str:
    raise RuntimeError("an ordinary application error")


@flask_app.get("/hook")
def hook() -> str:
    return "hooked"


@flask_app.before_request
def slow_before() -> None:
    if request.path == "/hook" and request.args.get("where") == "before":
        _spin(_seconds())


@flask_app.after_request
def slow_after(response: Response) -> Response:
    if request.path == "/hook" and request.args.get("where") == "after":
        _spin(_seconds())
    return response


@flask_app.teardown_request
def teardown(error: BaseException | None) -> None:
    if request.path == "/hook" and request.args.get("where") == "teardown":
        _spin(_seconds())
    if request.args.get("teardown") == "fail":
        raise RuntimeError("a teardown handler failed")


@flask_app.get("/budget")
def budget() -> str:
    """What a downstream service sees: the budget the caller sent on."""
    return request.headers.get("X-Bastion-Timeout-Ms", "none")


@flask_app.get("/fanout")
def fanout() -> Response:
    """A coordinator: asks workers in a pool and in a plain thread, no Bastion code."""
    base = request.host_url.rstrip("/")

    def work() -> dict[str, Any]:
        sent_on = requests.get(f"{base}/budget", timeout=10).text
        return {"remaining": remaining(), "sent_on": sent_on}

    futures = [_pool.submit(work) for _ in range(3)]
    seen: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: seen.update(work()))
    thread.start()
    thread.join()
    return Response(
        json.dumps({"pool": [f.result() for f in futures], "thread": seen}),
        mimetype="application/json",
    )


@flask_app.get("/dump")
def dump() -> Response:
    """Every thread's stack (faulthandler: no lock taken, as an operator would)."""
    with tempfile.TemporaryFile("w+") as out:
        faulthandler.dump_traceback(out, all_threads=True)
        out.seek(0)
        return Response(out.read(), mimetype="text/plain")


@flask_app.get("/missing")
def missing() -> str:
    abort(404)


HttpInstrumentor().instrument()
protect(flask_app)


def _timed(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Outside Bastion: stamp the server-side time to the response start and the
    thread that served it."""

    def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()

        def stamped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            extra = [
                ("X-Test-Elapsed", f"{time.monotonic() - started:.4f}"),
                ("X-Test-Thread", threading.current_thread().name),
                ("X-Test-Pid", str(os.getpid())),
            ]
            return start_response(status, [*headers, *extra], exc_info)

        return app(environ, stamped)

    return timed


flask_timed = _timed(flask_app)


def _plain(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/raise":
        raise RuntimeError("an ordinary error of a plain WSGI app")
    if path == "/cpu":
        _spin(float(environ.get("QUERY_STRING", "s=1").partition("=")[2] or 1))
    left = remaining()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"none" if left is None else f"{left:.6f}".encode()]


wsgi_timed = _timed(DeadlineMiddleware.from_settings(_plain))


async def blocking(request: Request) -> PlainTextResponse:
    """An async endpoint that blocks the event loop (sync code where it must not be):
    the loop's timer cannot fire until it returns."""
    time.sleep(float(request.query_params.get("s", "0.5")))
    return PlainTextResponse("blocked the loop")


async def asgi_fast(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


asgi_app = protect(
    Starlette(routes=[Route("/blocking", blocking), Route("/fast", asgi_fast)]),
)
