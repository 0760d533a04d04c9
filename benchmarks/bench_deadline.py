"""Per-request cost of the deadline middlewares, with 1,000 other deadlines in flight.

Flask (WSGI): the bare ``app.wsgi_app`` against ``DeadlineMiddleware`` around it, both
called in-process with the same environ, body iterated and closed as a server would.
The 1,000 other deadlines are registrations in the process's watchdog heap, expiring
in an hour (what 1,000 requests parked in other threads would leave there).

Starlette (ASGI): the bare app against ``DeadlineASGIMiddleware`` around it, called
in-process; 1,000 other requests are really in flight through the same middleware
(tasks parked in the handler), so the loop's timer heap holds 1,000 live entries.
The loop runs one iteration per request (``asyncio.sleep(0)``), as under a server.

All candidates run in interleaved rounds (A B C C B A ...) in one process, timed by
the serving thread's CPU time (this machine's 2 cores are shared, and wall time
counts the neighbours' work too); the table reports medians. Two references run
alongside: for Flask the *floor*, the least any deadline can do (a ``Deadline`` in
the ``ContextVar`` and a dict entry for a watchdog); for Starlette a plain
``asyncio.timeout``.

``python -m benchmarks deadline`` (or ``make bench``).
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from middleware.deadline import Deadline
from middleware.deadline._context import _current
from middleware.deadline.asgi import DeadlineASGIMiddleware
from middleware.deadline.watchdog import Expiry, RequestInfo, WatchedRequest, get_watchdog
from middleware.deadline.wsgi import DeadlineMiddleware
from middleware.settings import Settings

IN_FLIGHT = 1000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "21"))
SETTINGS = Settings(deadline="enforce", deadline_seconds=25.0)


# --- Flask -------------------------------------------------------------------------
def flask_app() -> Flask:
    app = Flask("bench")

    @app.get("/")
    def index() -> str:
        return "ok"

    return app


ENVIRON = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "bench",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "bench",
    "HTTP_USER_AGENT": "bench",
    "HTTP_ACCEPT": "*/*",
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def run_wsgi(app: Callable[..., Iterable[bytes]], n: int) -> float:
    start = time.thread_time()
    for _ in range(n):
        environ = dict(ENVIRON)
        environ["wsgi.input"] = io.BytesIO()
        body = app(environ, _start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.thread_time() - start) / n * 1e6


class _Idle:
    enforce = False

    def inspect(self, request: WatchedRequest, frame: Any) -> Any: ...

    def annotate(self, expiry: Expiry) -> None: ...

    def report(self, expiry: Expiry) -> None: ...


def park_wsgi_deadlines() -> list[WatchedRequest]:
    """1,000 requests running in other "threads" (negative ids: no such thread)."""
    watchdog = get_watchdog()
    parked = []
    for i in range(1, IN_FLIGHT + 1):
        request = WatchedRequest(thread_id=-i)
        watchdog.watch(request)
        request.info = RequestInfo(_Idle(), 3600.0, "bench")
        request.expires_at = time.monotonic() + 3600
        parked.append(request)
    return parked


# --- Starlette -----------------------------------------------------------------------
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 80),
}


def starlette_app(parked: asyncio.Event) -> Starlette:
    async def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def park(request: Request) -> PlainTextResponse:
        await parked.wait()
        return PlainTextResponse("released")

    return Starlette(routes=[Route("/", index), Route("/park", park)])


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def run_asgi(app: Callable[..., Awaitable[None]], n: int) -> float:
    start = time.thread_time()
    for _ in range(n):
        await app(dict(SCOPE), _receive, _send)
        await asyncio.sleep(0)
    return (time.thread_time() - start) / n * 1e6


def floor_wsgi(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Reference: the least any deadline can do (a Deadline in the ContextVar and a
    dict entry per thread for a watchdog), with nothing to enforce it."""
    live: dict[int, Deadline] = {}

    def floor(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        deadline = Deadline(time.monotonic() + 25.0, 25.0, "default")
        token = _current.set(deadline)
        thread = threading.get_ident()
        live[thread] = deadline
        try:
            return app(environ, start_response)
        finally:
            del live[thread]
            _current.reset(token)

    return floor


def timeout_asgi(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Reference: a plain ``asyncio.timeout`` around the app (no 504, no records)."""

    async def with_timeout(scope: Any, receive: Any, send: Any) -> None:
        async with asyncio.timeout(25.0):
            await app(scope, receive, send)

    return with_timeout


def interleave(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each candidate once per round, the order reversed every other round."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(candidates[name]())
    return times


async def asgi_rounds() -> tuple[dict[str, list[float]], int]:
    release = asyncio.Event()
    bare = starlette_app(release)
    wrapped = DeadlineASGIMiddleware(bare, SETTINGS)
    timed = timeout_asgi(bare)
    parked_scope = {**SCOPE, "path": "/park", "raw_path": b"/park"}
    parked = [
        asyncio.ensure_future(wrapped(dict(parked_scope), _receive, _send))
        for _ in range(IN_FLIGHT)
    ]
    await asyncio.sleep(0.05)
    timers = wrapped._timers
    live = len(timers.live) if timers else 0
    apps = {"bare": bare, "asyncio.timeout": timed, "Bastion": wrapped}
    n = 2000
    times: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():
        await run_asgi(app, n)
    names = list(apps)
    for i in range(ROUNDS):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(await run_asgi(apps[name], n))
    release.set()
    await asyncio.gather(*parked)
    return times, live


def row(label: str, times: list[float], bare: list[float], bar: str, ratio: bool) -> str:
    median = statistics.median(times)
    if ratio:
        cost = f"{statistics.median([t / b for t, b in zip(times, bare, strict=True)]):.3f}x"
    else:
        cost = f"{statistics.median([t - b for t, b in zip(times, bare, strict=True)]):+.2f} µs"
    return f"| {label} | {median:.2f} | {cost} | {bar} |"


def main() -> None:
    # Flask
    app = flask_app()
    bare_wsgi = app.wsgi_app
    wrapped_wsgi = DeadlineMiddleware(bare_wsgi, SETTINGS)
    floor = floor_wsgi(bare_wsgi)
    parked = park_wsgi_deadlines()
    in_flight = get_watchdog().in_flight()
    n = 3000
    observing = DeadlineMiddleware(bare_wsgi, SETTINGS.replace(deadline="observe"))
    wsgi_apps = {"bare": bare_wsgi, "floor": floor, "observe": observing, "Bastion": wrapped_wsgi}
    for candidate in wsgi_apps.values():
        run_wsgi(candidate, n)
    wsgi = interleave(
        {name: (lambda a=candidate: run_wsgi(a, n)) for name, candidate in wsgi_apps.items()},
        ROUNDS,
    )
    for request in parked:
        request.expires_at = None

    # Starlette
    asgi, live = asyncio.run(asgi_rounds())

    print(
        f"{ROUNDS} interleaved rounds, CPU time of the serving thread per request; "
        f"other deadlines in flight: WSGI {in_flight}, ASGI {live}"
    )
    print()
    print("| candidate | µs/request (median) | cost vs bare (median per round) | bar |")
    print("|---|---|---|---|")
    print(row("Flask, bare", wsgi["bare"], wsgi["bare"], "", True))
    print(
        row(
            "Flask, floor: Deadline + ContextVar + dict entry only",
            wsgi["floor"],
            wsgi["bare"],
            "",
            True,
        )
    )
    print(row("Flask + `DeadlineMiddleware`, observe", wsgi["observe"], wsgi["bare"], "", True))
    print(row("Flask + `DeadlineMiddleware`", wsgi["Bastion"], wsgi["bare"], "≤ 1.03x", True))
    print(row("Starlette, bare", asgi["bare"], asgi["bare"], "", False))
    print(row("Starlette + `asyncio.timeout`", asgi["asyncio.timeout"], asgi["bare"], "", False))
    print(
        row("Starlette + `DeadlineASGIMiddleware`", asgi["Bastion"], asgi["bare"], "≤ +5 µs", False)
    )


if __name__ == "__main__":
    main()
