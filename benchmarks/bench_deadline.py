"""Per-request cost of the deadline middlewares, with 1,000 other deadlines in flight.

Flask (WSGI): the bare ``app.wsgi_app`` against ``DeadlineMiddleware`` around it, both
called in-process with the same environ, body iterated and closed as a server would.
The 1,000 other deadlines are registrations in the process's watchdog heap, expiring
in an hour (what 1,000 requests parked in other threads would leave there).

Starlette (ASGI): the bare app against ``DeadlineASGIMiddleware`` around it, called
in-process; 1,000 other requests are really in flight through the same middleware
(tasks parked in the handler), so the loop's timer heap holds 1,000 live entries.
The loop runs one iteration per request (``asyncio.sleep(0)``), as under a server.

Both candidates run in interleaved rounds (A B B A ...) in one process; the table
reports the median per-request time of each and the ratio or difference.

``python -m benchmarks deadline`` (or ``make bench``).
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from middleware.deadline.asgi import DeadlineASGIMiddleware
from middleware.deadline.watchdog import WatchedRequest, get_watchdog
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
    def annotate(self, request: WatchedRequest, info: Any) -> None: ...

    def report(self, request: WatchedRequest, info: Any) -> None: ...


def park_wsgi_deadlines() -> list[WatchedRequest]:
    watchdog = get_watchdog()
    parked = [
        WatchedRequest(time.monotonic() + 3600, -i, False, _Idle(), None)  # other "threads"
        for i in range(1, IN_FLIGHT + 1)
    ]
    for request in parked:
        watchdog.watch(request)
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


async def asgi_rounds() -> tuple[list[float], list[float], int]:
    release = asyncio.Event()
    bare = starlette_app(release)
    wrapped = DeadlineASGIMiddleware(bare, SETTINGS)
    parked_scope = {**SCOPE, "path": "/park", "raw_path": b"/park"}
    parked = [
        asyncio.ensure_future(wrapped(dict(parked_scope), _receive, _send))
        for _ in range(IN_FLIGHT)
    ]
    await asyncio.sleep(0.05)
    timers = wrapped._timers
    live = len(timers.live) if timers else 0
    n = 2000
    await run_asgi(bare, n)
    await run_asgi(wrapped, n)
    a: list[float] = []
    b: list[float] = []
    for i in range(ROUNDS):
        order = [(bare, a), (wrapped, b)] if i % 2 == 0 else [(wrapped, b), (bare, a)]
        for app, out in order:
            out.append(await run_asgi(app, n))
    release.set()
    await asyncio.gather(*parked)
    return a, b, live


def main() -> None:
    # Flask
    app = flask_app()
    bare_wsgi = app.wsgi_app
    wrapped_wsgi = DeadlineMiddleware(bare_wsgi, SETTINGS)
    parked = park_wsgi_deadlines()
    in_flight = get_watchdog().in_flight()
    n = 3000
    run_wsgi(bare_wsgi, n)
    run_wsgi(wrapped_wsgi, n)
    bare_times: list[float] = []
    wrapped_times: list[float] = []
    for i in range(ROUNDS):
        order = [(bare_wsgi, bare_times), (wrapped_wsgi, wrapped_times)]
        for candidate, out in order if i % 2 == 0 else reversed(order):
            out.append(run_wsgi(candidate, n))
    for request in parked:
        get_watchdog().finish(request)
    flask_bare = statistics.median(bare_times)
    flask_wrapped = statistics.median(wrapped_times)
    ratios = [w / b for b, w in zip(bare_times, wrapped_times, strict=True)]

    # Starlette
    a, b, live = asyncio.run(asgi_rounds())
    star_bare = statistics.median(a)
    star_wrapped = statistics.median(b)
    added = [y - x for x, y in zip(a, b, strict=True)]

    print(f"{ROUNDS} interleaved rounds; other deadlines in flight: WSGI {in_flight}, ASGI {live}")
    print()
    print("| app | bare (µs/request) | with deadline (µs/request) | cost | bar |")
    print("|---|---|---|---|---|")
    print(
        f"| Flask (WSGI) | {flask_bare:.2f} | {flask_wrapped:.2f} | "
        f"{flask_wrapped / flask_bare:.3f}x (median of per-round ratios "
        f"{statistics.median(ratios):.3f}x) | ≤ 1.03x |"
    )
    print(
        f"| Starlette (ASGI) | {star_bare:.2f} | {star_wrapped:.2f} | "
        f"+{star_wrapped - star_bare:.2f} µs (median of per-round differences "
        f"+{statistics.median(added):.2f} µs) | ≤ +5 µs |"
    )


if __name__ == "__main__":
    main()
