"""Per-request cost of the deadline middlewares, with 1,000 other deadlines in flight.

Flask (WSGI): the bare ``app.wsgi_app`` against ``DeadlineMiddleware`` around it, both
called in-process with the same environ, body iterated and closed as a server would.
The 1,000 other deadlines are registrations in the process's watchdog, expiring in an
hour (what 1,000 requests running in other threads would leave there). Each candidate
is timed against the bare app in ABBA blocks (bare, candidate, candidate, bare), one
candidate at a time, and the whole run is repeated in several fresh processes (a
candidate's position among others, and a process's memory layout, each shift a figure
by about half a percent), so the table reports the median over the processes and
their range, as microseconds of CPU added per request. An empty WSGI layer runs
alongside as a reference (what any middleware costs).

Starlette (ASGI): the bare app against ``DeadlineASGIMiddleware`` around it, called
in-process; 1,000 other requests are really in flight through the same middleware
(tasks parked in the handler), so the loop's timer heap holds 1,000 live entries.
The loop runs one iteration per request (``asyncio.sleep(0)``), as under a server.
Interleaved rounds (A B C C B A ...), with a plain ``asyncio.timeout`` alongside.

Everything is timed by the serving thread's CPU time (the machine's cores are shared,
and wall time counts the neighbours' work too).

``python -m benchmarks deadline`` (or ``make bench``); ``BENCH_PROCESSES`` and
``BENCH_ROUNDS`` change the repetitions.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bastion.middleware._flags import Mode
from bastion.middleware.deadline.asgi import DeadlineASGIMiddleware
from bastion.middleware.deadline.watchdog import Registration, get_watchdog
from bastion.middleware.deadline.wsgi import DeadlineMiddleware
from bastion.settings import Settings

IN_FLIGHT = 1000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "21"))
PROCESSES = int(os.environ.get("BENCH_PROCESSES", "5"))
#: ABBA blocks per Flask candidate in each process, and requests per timed run.
BLOCKS = int(os.environ.get("BENCH_BLOCKS", "11"))
WSGI_REQUESTS = 2000
SETTINGS = Settings(deadline=Mode.ENFORCE, deadline_seconds=25.0)


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
    mode = Mode.OBSERVE

    def route_label(self, path: str) -> str:
        return path


def park_wsgi_deadlines() -> list[Registration]:
    """1,000 requests running in other "threads" (negative ids: no such thread),
    placed in the watchdog's registry as its begin() would place them."""
    watchdog = get_watchdog()
    parked = []
    for i in range(1, IN_FLIGHT + 1):
        registration = Registration(_Idle(), time.monotonic() + 3600, 3600.0, "bench", ENVIRON)
        registration.thread_id = -i
        watchdog._live[-i] = registration
        parked.append(registration)
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


def empty_layer(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Reference: a WSGI layer that does nothing (what any middleware costs)."""

    def layer(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return app(environ, start_response)

    return layer


def timeout_asgi(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Reference: a plain ``asyncio.timeout`` around the app (no 504, no records)."""

    async def with_timeout(scope: Any, receive: Any, send: Any) -> None:
        async with asyncio.timeout(25.0):
            await app(scope, receive, send)

    return with_timeout


async def asgi_rounds() -> tuple[dict[str, list[float]], int]:
    release = asyncio.Event()
    bare = starlette_app(release)
    wrapped = DeadlineASGIMiddleware.from_settings(bare, SETTINGS)
    timed = timeout_asgi(bare)
    parked_scope = {**SCOPE, "path": "/park", "raw_path": b"/park"}
    parked = [
        asyncio.ensure_future(wrapped(dict(parked_scope), _receive, _send))
        for _ in range(IN_FLIGHT)
    ]
    await asyncio.sleep(0.05)
    timers = wrapped._timers
    live = len(timers.live) if timers else 0
    apps: dict[str, Callable[..., Awaitable[None]]] = {
        "bare": bare,
        "asyncio.timeout": timed,
        "Bastion": wrapped,
    }
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


WSGI_CANDIDATES = ("empty layer", "observe", "enforce")


def wsgi_process() -> None:
    """One process's Flask measurements, as JSON on stdout: for each candidate, the
    µs it adds to the bare app in each ABBA block, and the bare app's µs per request."""
    app = flask_app()
    bare = app.wsgi_app
    candidates: dict[str, Callable[..., Iterable[bytes]]] = {
        "empty layer": empty_layer(bare),
        "observe": DeadlineMiddleware.from_settings(bare, SETTINGS.replace(deadline=Mode.OBSERVE)),
        "enforce": DeadlineMiddleware.from_settings(bare, SETTINGS),
    }
    parked = park_wsgi_deadlines()
    in_flight = get_watchdog().in_flight()
    n = WSGI_REQUESTS
    for candidate in (bare, *candidates.values()):
        run_wsgi(candidate, n)
    added: dict[str, list[float]] = {}
    bare_us: list[float] = []
    for name, candidate in candidates.items():
        added[name] = []
        for _ in range(BLOCKS):
            first, a, b, last = (run_wsgi(x, n) for x in (bare, candidate, candidate, bare))
            added[name].append((a + b - first - last) / 2)
            bare_us.append((first + last) / 2)
    for registration in parked:
        get_watchdog()._live.pop(registration.thread_id, None)
    print(json.dumps({"added": added, "bare_us": bare_us, "in_flight": in_flight}))


def wsgi_rounds() -> tuple[dict[str, list[float]], list[float], int]:
    """Each process's median µs added per candidate, the bare app's µs per request,
    and the deadlines in flight."""
    medians: dict[str, list[float]] = {name: [] for name in WSGI_CANDIDATES}
    bare_us: list[float] = []
    in_flight = 0
    for _ in range(PROCESSES):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "from benchmarks.bench_deadline import wsgi_process; wsgi_process()",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        found = json.loads(out.strip().splitlines()[-1])
        for name in WSGI_CANDIDATES:
            medians[name].append(statistics.median(found["added"][name]))
        bare_us.append(statistics.median(found["bare_us"]))
        in_flight = found["in_flight"]
    return medians, bare_us, in_flight


def row(label: str, times: list[float], bare: list[float], bar: str, ratio: bool) -> str:
    median = statistics.median(times)
    if ratio:
        cost = f"{statistics.median([t / b for t, b in zip(times, bare, strict=True)]):.3f}x"
    else:
        cost = f"{statistics.median([t - b for t, b in zip(times, bare, strict=True)]):+.2f} µs"
    return f"| {label} | {median:.2f} | {cost} | {bar} |"


def added_row(label: str, medians: list[float], bar: str) -> str:
    spread = f"{min(medians):+.2f} to {max(medians):+.2f} µs"
    return f"| {label} | {statistics.median(medians):+.2f} µs | {spread} | {bar} |"


def main() -> None:
    medians, bare_us, in_flight = wsgi_rounds()
    asgi, live = asyncio.run(asgi_rounds())

    print(
        f"Flask: {PROCESSES} processes, {BLOCKS} ABBA blocks per candidate of "
        f"{WSGI_REQUESTS} requests, CPU time of the serving thread; bare Flask "
        f"{statistics.median(bare_us):.1f} µs/request; {in_flight} other deadlines in flight"
    )
    print()
    print("| candidate | CPU added per request (median of processes) | range | bar |")
    print("|---|---|---|---|")
    print(added_row("empty WSGI layer (reference)", medians["empty layer"], ""))
    print(added_row("`DeadlineMiddleware`, observe", medians["observe"], "≤ +3 µs"))
    print(added_row("`DeadlineMiddleware`, enforce", medians["enforce"], "≤ +3 µs"))
    print()
    print(
        f"Starlette: {ROUNDS} interleaved rounds, CPU time of the serving thread per request; "
        f"{live} other requests in flight"
    )
    print()
    print("| candidate | µs/request (median) | cost vs bare (median per round) | bar |")
    print("|---|---|---|---|")
    print(row("Starlette, bare", asgi["bare"], asgi["bare"], "", False))
    print(row("Starlette + `asyncio.timeout`", asgi["asyncio.timeout"], asgi["bare"], "", False))
    print(
        row("Starlette + `DeadlineASGIMiddleware`", asgi["Bastion"], asgi["bare"], "≤ +5 µs", False)
    )


if __name__ == "__main__":
    main()
