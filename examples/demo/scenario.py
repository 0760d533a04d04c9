"""What the demo asks of the six services in every stage, and what it keeps of the answers.

The same calls run in every stage, so a stage's effect is the difference between two
columns. The calls run side by side, in lanes: a lane's calls run in order (the rollup
before the dashboard that reads it).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

DAY = "2026-01-20"
CONSOLE = "https://console.platform.example"
FOREIGN = "https://evil.example.net"
#: The response headers the demo follows (Bastion's; the server's own are left out).
WATCHED = (
    "Content-Security-Policy",
    "Content-Security-Policy-Report-Only",
    "Reporting-Endpoints",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
    "Cross-Origin-Resource-Policy",
    "Access-Control-Allow-Origin",
)


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    path: str
    what: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    #: Runs after the call before it, in its lane (it reads what that one wrote).
    after_previous: bool = False

    @property
    def key(self) -> str:
        origin = self.headers.get("Origin", "")
        return f"{self.method} {self.path}" + (f" from {origin.split('//')[1]}" if origin else "")


@dataclass
class Exchange:
    """One answer, as the client saw it."""

    service: str
    request: str
    what: str
    status: int
    seconds: float
    content_type: str
    headers: dict[str, str]
    body: str

    def problem(self) -> dict[str, Any] | None:
        if not self.content_type.startswith("application/problem+json"):
            return None
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chrome_batch(count: int) -> bytes:
    """``count`` CSP violations as Chromium's Reporting API posts them (one body)."""
    reports = [
        {
            "age": 10 + i,
            "body": {
                "blockedURL": "inline",
                "disposition": "report",
                "documentURL": f"{CONSOLE}/jobs/{i}",
                "effectiveDirective": "script-src-elem",
                "lineNumber": 40 + i,
                "columnNumber": 9,
                "originalPolicy": "default-src 'self'; report-uri /csp-reports",
                "referrer": "",
                "sample": f"console.log('inline {i}')",
                "sourceFile": f"{CONSOLE}/jobs/{i}",
                "statusCode": 200,
            },
            "type": "csp-violation",
            "url": f"{CONSOLE}/jobs/{i}",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36",
        }
        for i in range(count)
    ]
    return json.dumps(reports).encode()


def preflight(service: str, path: str, origin: str, what: str) -> Call:
    return Call(
        service,
        "OPTIONS",
        path,
        what,
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )


CALLS: dict[str, list[Call]] = {
    "scrapers": [
        Call("scrapers", "POST", f"/scrape/odds/{DAY}", "feed -> load job into raw staging"),
        Call("scrapers", "POST", "/scrape/injuries", "feed page slower than the read timeout"),
        Call("scrapers", "POST", "/scrape/props-backfill", "feed over https with verify=False"),
        Call(
            "scrapers",
            "POST",
            "/scrape/live-lines",
            "trickling feed, caller's budget 1.5 s",
            headers={"X-Bastion-Timeout-Ms": "1500"},  # a Bastion caller's remaining budget
        ),
    ],
    "raw-processor": [
        Call("raw-processor", "POST", f"/process/odds/{DAY}", "MERGE staging into odds"),
        # after the MERGE: Bastion has looked the table up by then, and judges the query
        Call(
            "raw-processor",
            "GET",
            "/health",
            "COUNT(*) with no partition filter",
            after_previous=True,
        ),
    ],
    "analytics-processor": [
        Call(
            "analytics-processor",
            "POST",
            "/rollup",
            "long rollup (CTAS)",
            headers={"Content-Type": "application/json"},
            body=json.dumps({"game_date": DAY}).encode(),
        ),
        Call(
            "analytics-processor",
            "GET",
            "/dashboards/leaders",
            "reads the rollup",
            after_previous=True,
        ),
        Call("analytics-processor", "GET", "/dashboards/season", "read over its class timeout"),
        preflight("analytics-processor", "/dashboards/leaders", CONSOLE, "CORS preflight, console"),
        preflight("analytics-processor", "/dashboards/leaders", FOREIGN, "CORS preflight, foreign"),
    ],
    "precompute-processor": [
        Call("precompute-processor", "POST", f"/precompute/{DAY}", "MERGE of player features"),
    ],
    "prediction-coordinator": [
        Call("prediction-coordinator", "POST", f"/start/{DAY}", "fan-out: 4 worker calls"),
        Call(
            "prediction-coordinator",
            "POST",
            "/csp-reports",
            "Chrome's batch of 40 CSP reports",
            headers={"Content-Type": "application/reports+json", "Origin": CONSOLE},
            body=chrome_batch(40),
        ),
        Call(
            "prediction-coordinator",
            "POST",
            "/csp-reports",
            "a malformed report",
            headers={"Content-Type": "application/csp-report"},
            body=b"{",
        ),
    ],
    "prediction-worker": [
        Call("prediction-worker", "POST", f"/predict/{DAY}", "whole slate, over the deadline"),
    ],
}


def send(base_url: str, call: Call) -> Exchange:
    started = time.monotonic()
    answer = requests.request(
        call.method, base_url + call.path, headers=call.headers, data=call.body, timeout=60
    )
    return Exchange(
        service=call.service,
        request=call.key,
        what=call.what,
        status=answer.status_code,
        seconds=round(time.monotonic() - started, 3),
        content_type=answer.headers.get("Content-Type", ""),
        headers={name: answer.headers[name] for name in WATCHED if name in answer.headers},
        body=answer.text[:2000],
    )


def lanes() -> list[list[Call]]:
    """Every call in a lane of its own, but one ``after_previous`` joins the lane before."""
    out: list[list[Call]] = []
    for calls in CALLS.values():
        for call in calls:
            if call.after_previous and out:
                out[-1].append(call)
            else:
                out.append([call])
    return out


def run(urls: dict[str, str]) -> list[Exchange]:
    """Every lane at once; the answers in ``CALLS`` order."""

    def one_lane(calls: list[Call]) -> list[Exchange]:
        return [send(urls[call.service], call) for call in calls]

    work = lanes()
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        results = list(pool.map(one_lane, work))
    return [exchange for exchanges in results for exchange in exchanges]
