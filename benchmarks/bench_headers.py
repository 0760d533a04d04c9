"""Per-request cost of security headers + CORS on a minimal Flask and Starlette endpoint.

``python -m benchmarks headers``

How it measures (so the figures mean what they say):

* Flask: each candidate is its own ``Flask`` app with the same ``GET /`` JSON view,
  called as a WSGI app (``app(environ, start_response)``) with a prepared environ
  (copied per request) and the body iterated and closed, as a server would. No
  socket, no test client: what differs between candidates is only the middleware.
* Starlette: each candidate is driven directly as an ASGI app, in one event loop,
  over `scheme: https` (so Bastion sends HSTS too),
  with a minimal scope, a ``receive`` returning an empty body and a no-op ``send``.
* Every request carries ``Origin: https://app.example.com`` (an allowed cross-origin
  call, the path that does the most CORS work); a second table sends no Origin.
* Rounds are interleaved (ABBA order), each round times a batch of requests per
  candidate; the table shows the median per-request time and the median of the
  per-round ratios to the bare app of the same framework.

Candidates: bare; Bastion (``protect()``: headers ``api`` preset + CORS in one pass,
deadline off); Bastion with the same two guards as two layers (headers over
``CORSMiddleware``: what the one pass saves); ``secure``'s middleware (its default
headers); flask-talisman (defaults, ``force_https=False``); flask-cors / Starlette's
``CORSMiddleware`` (same origin list).
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

ORIGIN = "https://app.example.com"
ROUNDS = 41
BATCH = 300
BARS = {"flask": 1.05, "starlette": 1.20}


def _settings() -> Any:
    from bastion.middleware.settings import MiddlewareSettings, Mode

    return MiddlewareSettings(cors_origins=(ORIGIN,), deadline=Mode.OFF)


def _two_layers(app: Any, asgi: bool) -> Any:
    """Headers over a separate CORS layer: what ``protect`` would build without giving
    the headers layer the CORS policy (the one-pass design is measured against it)."""
    from bastion.middleware import cors, headers

    s = _settings()
    if asgi:
        inner = cors.CORSASGIMiddleware.from_settings(app, s)
        return headers.SecurityHeadersASGIMiddleware.from_settings(inner, s)
    inner = cors.CORSMiddleware.from_settings(app, s)
    return headers.SecurityHeadersMiddleware.from_settings(inner, s)


# --- Flask -----------------------------------------------------------------------------
def flask_candidates() -> dict[str, Any]:
    from flask import Flask
    from flask_cors import CORS
    from flask_talisman import Talisman
    from secure import Secure
    from secure.middleware import SecureWSGIMiddleware

    from bastion.middleware import protect

    def make() -> Flask:
        app = Flask("bench")

        @app.get("/")
        def index() -> dict[str, bool]:
            return {"ok": True}

        return app

    bare = make()
    bastion = protect(make(), _settings())
    secure_app = make()
    secure_app.wsgi_app = SecureWSGIMiddleware(  # type: ignore[method-assign]
        secure_app.wsgi_app, secure=Secure.with_default_headers()
    )
    talisman = make()
    Talisman(talisman, force_https=False)
    flask_cors = make()
    CORS(flask_cors, origins=[ORIGIN])
    two_layers = make()
    two_layers.wsgi_app = _two_layers(two_layers.wsgi_app, asgi=False)  # type: ignore[method-assign]
    return {
        "bare": bare,
        "Bastion headers+CORS": bastion,
        "Bastion, two layers": two_layers,
        "secure middleware": secure_app,
        "flask-talisman": talisman,
        "flask-cors": flask_cors,
    }


def flask_runner(app: Any, origin: bool) -> Callable[[int], float]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench.local",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "bench.local",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if origin:
        environ["HTTP_ORIGIN"] = ORIGIN

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    def run(n: int) -> float:
        started = time.process_time()
        for _ in range(n):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return (time.process_time() - started) / n

    return run


# --- Starlette -------------------------------------------------------------------------
def starlette_candidates() -> dict[str, Any]:
    from secure import Secure
    from secure.middleware import SecureASGIMiddleware
    from starlette.applications import Starlette
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from bastion.middleware import protect

    async def index(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    def make() -> Starlette:
        return Starlette(routes=[Route("/", index)])

    return {
        "bare": make(),
        "Bastion headers+CORS": protect(make(), _settings()),
        "Bastion, two layers": _two_layers(make(), asgi=True),
        "secure middleware": SecureASGIMiddleware(make(), secure=Secure.with_default_headers()),
        "Starlette CORSMiddleware": CORSMiddleware(make(), allow_origins=[ORIGIN]),
    }


def starlette_runner(app: Any, origin: bool, loop: asyncio.AbstractEventLoop) -> Any:
    headers = [(b"host", b"bench.local"), (b"user-agent", b"bench")]
    if origin:
        headers.append((b"origin", ORIGIN.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",  # HSTS is sent: the path with the most header work
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("bench.local", 80),
    }
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        return None

    async def batch(n: int) -> float:
        started = time.process_time()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return (time.process_time() - started) / n

    def run(n: int) -> float:
        return loop.run_until_complete(batch(n))

    return run


# --- measurement -----------------------------------------------------------------------
def measure(runners: dict[str, Callable[[int], float]]) -> dict[str, tuple[float, float]]:
    """name → (median µs per request, median per-round ratio to "bare")."""
    names = list(runners)
    for run in runners.values():  # warm up (imports, caches, first-request paths)
        run(BATCH)
    times: dict[str, list[float]] = {n: [] for n in names}
    for round_no in range(ROUNDS):
        order = names if round_no % 2 == 0 else names[::-1]  # ABBA
        for name in order:
            times[name].append(runners[name](BATCH))
    bare = times["bare"]
    return {
        n: (
            statistics.median(t) * 1e6,
            statistics.median(x / b for x, b in zip(t, bare, strict=True)),
        )
        for n, t in times.items()
    }


def table(title: str, results: dict[str, tuple[float, float]], bar: float) -> str:
    lines = [f"**{title}**", "", "| candidate | µs / request | x bare |", "|---|---:|---:|"]
    for name, (micros, ratio) in results.items():
        verdict = ""
        if name.startswith("Bastion"):
            verdict = f" ({'within' if ratio <= bar else 'OVER'} the {bar:.2f}x bar)"
        lines.append(f"| {name} | {micros:.1f} | {ratio:.3f}{verdict} |")
    return "\n".join(lines)


def main() -> None:
    import logging

    logging.getLogger("bastion").setLevel(logging.WARNING)
    flask_apps = flask_candidates()
    starlette_apps = starlette_candidates()
    loop = asyncio.new_event_loop()
    try:
        for origin in (True, False):
            label = f"Origin: {ORIGIN}" if origin else "no Origin header"
            flask = measure({n: flask_runner(a, origin) for n, a in flask_apps.items()})
            print(table(f"Flask, GET / ({label})", flask, BARS["flask"]), "\n", flush=True)
            runners = {n: starlette_runner(a, origin, loop) for n, a in starlette_apps.items()}
            star = measure(runners)
            print(table(f"Starlette, GET / ({label})", star, BARS["starlette"]), "\n", flush=True)
    finally:
        loop.close()


if __name__ == "__main__":
    main()
