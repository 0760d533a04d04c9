"""Cost of the CSP / Reporting API intake: on every other request, and per report.

``python -m benchmarks csp``

* Pass-through: a minimal Flask ``GET /`` JSON endpoint, bare and with
  ``CSPReportMiddleware`` mounted at ``/csp-reports`` (the cost every ordinary request
  pays for the intake being there: one path comparison).
* Per report: ``POST /csp-reports`` with a legacy ``application/csp-report`` body and a
  two-report ``application/reports+json`` batch, through the WSGI intake (parse, validate,
  rate-limit, record); and a refused oversized body (413 from Content-Length).

Each candidate is called as a WSGI app with a prepared environ, as a server would. Rounds
are interleaved (ABBA), each round times a batch per candidate; the table shows medians.
The OpenTelemetry API is left without an SDK here (the runner shares one process between
benchmarks), so recording costs only the API's no-op calls; the intake's own work is
what is measured. Clients rotate over 10,000 addresses, so the bounded rate-limit table
is exercised (evictions included) and no request is rate limited.
"""

from __future__ import annotations

import io
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

ROUNDS = 31
BATCH = 400
PATH = "/csp-reports"
LEGACY = json.dumps(
    {
        "csp-report": {
            "document-uri": "https://app.example.com/props",
            "effective-directive": "script-src-elem",
            "blocked-uri": "https://cdn.evil.example/x.js",
            "disposition": "enforce",
        }
    }
).encode()
REPORTING = json.dumps(
    [
        {
            "type": "csp-violation",
            "url": "https://app.example.com/odds",
            "body": {
                "documentURL": "https://app.example.com/odds",
                "blockedURL": "inline",
                "effectiveDirective": "style-src-attr",
                "disposition": "enforce",
            },
        }
    ]
    * 2
).encode()

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _apps() -> tuple[WSGI, WSGI]:
    from flask import Flask

    from bastion.middleware.csp_reports import CSPReportMiddleware
    from bastion.settings import Settings

    def make() -> Flask:
        app = Flask("bench")

        @app.get("/")
        def index() -> dict[str, bool]:
            return {"ok": True}

        return app

    settings = Settings(csp_report_path=PATH, csp_report_rate_per_minute=10**6)
    wrapped = make()
    wrapped.wsgi_app = CSPReportMiddleware.from_settings(wrapped.wsgi_app, settings)  # type: ignore[method-assign]
    return make(), wrapped


def _environ(method: str, path: str, body: bytes, content_type: str, client: int) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": f"10.{client // 65536 % 256}.{client // 256 % 256}.{client % 256}",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
    }


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    pass


def _timer(
    app: WSGI, method: str, path: str, body: bytes = b"", ctype: str = ""
) -> Callable[[], float]:
    counter = [0]

    def run() -> float:
        environs = []
        for _ in range(BATCH):
            counter[0] = (counter[0] + 1) % 10_000
            environs.append(_environ(method, path, body, ctype, counter[0]))
        started = time.perf_counter()
        for environ in environs:
            result = app(environ, _start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return (time.perf_counter() - started) / BATCH

    return run


def measure(candidates: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm up
        candidates[name]()
    for round_ in range(ROUNDS):
        order = names if round_ % 2 == 0 else list(reversed(names))
        for name in order:
            times[name].append(candidates[name]())
    return times


def main() -> None:
    logging.getLogger("bastion.csp").disabled = True  # measure the intake, not log I/O
    bare, wrapped = _apps()
    pass_through = measure(
        {
            "bare Flask GET /": _timer(bare, "GET", "/"),
            "with the intake": _timer(wrapped, "GET", "/"),
        }
    )
    base = statistics.median(pass_through["bare Flask GET /"])
    ratios = [
        w / b
        for w, b in zip(
            pass_through["with the intake"], pass_through["bare Flask GET /"], strict=True
        )
    ]
    print("| request | median µs | vs bare |\n|---|---:|---:|")
    print(f"| bare Flask `GET /` | {base * 1e6:.1f} | 1.00x |")
    print(
        f"| same, intake mounted at {PATH} | "
        f"{statistics.median(pass_through['with the intake']) * 1e6:.1f} | "
        f"{statistics.median(ratios):.3f}x |"
    )
    reports = measure(
        {
            "legacy report (204)": _timer(wrapped, "POST", PATH, LEGACY, "application/csp-report"),
            "reports+json, 2 reports (204)": _timer(
                wrapped, "POST", PATH, REPORTING, "application/reports+json"
            ),
            "oversized body (413)": _timer(
                wrapped, "POST", PATH, b"x" * 20_000, "application/csp-report"
            ),
        }
    )
    for name, values in reports.items():
        print(f"| `POST {PATH}`: {name} | {statistics.median(values) * 1e6:.1f} | |")


if __name__ == "__main__":
    main()
