"""``python -m examples.demo`` (``make demo``): what Bastion does, shown on a running service.

1. Starts the project's local BigQuery server (seeded with the ``demo`` data set:
   partitioned tables of props, games, predictions, odds) and a tiny odds feed, both on
   loopback, in this process.
2. Serves ``examples.demo.service`` (a Flask app shaped like the prediction worker) with
   gunicorn and ``python:instrumentation.gunicorn_conf``, with the flags of rollout stage 3
   (``deploy/stages/stage-3.env``), and drives it with a scripted client: response
   headers, CORS, an unfiltered query (observed), outbound calls, the deadline's 504,
   the CSP report sink.
3. Restarts it with stage 4 (BigQuery enforced): the unfiltered query is refused and a
   slow job is stopped at the request deadline.
4. The cost advisor on the tracker's three materialized views (``examples.demo.costs``):
   ``bastion queries`` over the server's job history, ``bastion views --validate``.
5. Summarises the spans and metrics the service wrote (``demo-out/telemetry.jsonl``).

No cloud account, no network beyond loopback; every process it starts is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from examples.demo import summary
from examples.demo.costs import stage_costs
from examples.demo.peer import Peer, free_port
from instrumentation.bqserver import LocalBigQuery
from instrumentation.bqserver.seed import seed_demo

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "nba-props-demo"
DAY = "2026-01-20"
ORIGIN = "https://app.example.com"
LEGACY_REPORT = {
    "csp-report": {
        "document-uri": "https://app.example.com/props",
        "effective-directive": "script-src-elem",
        "violated-directive": "script-src-elem",
        "blocked-uri": "https://cdn.evil.example/x.js",
        "disposition": "enforce",
    }
}
# Headers every HTTP server sends; everything else on the answer came from Bastion.
_PLAIN = {"server", "date", "connection", "content-type", "content-length", "keep-alive"}

console = Console(width=110, highlight=False)


def stage_env(stage: int) -> dict[str, str]:
    values = {}
    for line in (ROOT / "deploy" / "stages" / f"stage-{stage}.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@contextlib.contextmanager
def service(stage: int, out: Path, bq: LocalBigQuery, peer: Peer) -> Iterator[str]:
    """gunicorn + the demo service with stage ``stage``'s flags; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        **stage_env(stage),
        "PYTHONPATH": str(ROOT),
        "K_SERVICE": "prediction-worker",
        "BASTION_CORS_ORIGINS": ORIGIN,
        "BASTION_DEADLINE_SECONDS": "3",
        "CLOUD_RUN_TIMEOUT_SECONDS": "10",
        "BASTION_BQ_SLOW_SECONDS_READ": "0.3",
        "BASTION_TELEMETRY_JSONL": str(out / "telemetry.jsonl"),
        "GUNICORN_THREADS": "4",
        "DEMO_BIGQUERY_URL": bq.url,
        "DEMO_BIGQUERY_PROJECT": PROJECT,
        "DEMO_PEER_URL": peer.url,
    }
    for name in [n for n in env if n.startswith("OTEL_")]:
        del env[name]  # the demo's telemetry goes to the JSON-lines file only
    log_path = out / f"service-stage-{stage}.log"
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(gunicorn),
                "--config",
                "python:instrumentation.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{port}",
                "examples.demo.service:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log_path)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # workers flush their telemetry on exit
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    console.print(log_path.read_text(errors="replace")[-3000:], markup=False)
    raise SystemExit(f"the demo service did not start (log: {log_path})")


class Client:
    """Sends the scripted requests and collects one table row per request."""

    def __init__(self, url: str, title: str) -> None:
        self.url = url
        self.table = Table(title=title, title_justify="left", show_lines=False)
        for column in ("request", "status", "time", "what happened"):
            self.table.add_column(column, overflow="fold")

    def call(self, method: str, path: str, note: str = "", **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        answer = requests.request(method, self.url + path, timeout=30, **kwargs)
        elapsed = time.monotonic() - started
        self.table.add_row(
            f"{method} {path}", str(answer.status_code), f"{elapsed:.2f}s", note or describe(answer)
        )
        return answer


def describe(answer: requests.Response) -> str:
    if not answer.content:
        return "-"
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:120]
    if isinstance(body, dict):
        for key in ("refused", "error", "detail", "title"):
            if key in body:
                return short(str(body[key]).replace(f"{ROOT}/", ""))
    return json.dumps(body)[:120]


def short(text: str, limit: int = 170) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def bastion_warnings(log_path: Path) -> list[str]:
    """The first line of each WARNING the service's Bastion loggers wrote."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if re.match(r"WARNING (bastion|instrumentation)\S*", line):
            line = re.sub(r" \[trace=[0-9a-f]+\]", "", line).replace(f"{ROOT}/", "")
            found.append(short(line, 400))
    return found


def show_headers(answer: requests.Response) -> None:
    table = Table(title=f"Response headers of GET /predictions/{DAY}", title_justify="left")
    table.add_column("header")
    table.add_column("value", overflow="fold")
    table.add_column("from")
    for name, value in answer.headers.items():
        table.add_row(name, value, "server" if name.lower() in _PLAIN else "Bastion")
    console.print(table)


def show_wrapping() -> None:
    source = (ROOT / "examples" / "demo" / "service.py").read_text().splitlines()
    start = next(i for i, line in enumerate(source) if "Bastion: the whole integration" in line)
    console.print(Syntax("\n".join(source[start : start + 5]), "python", theme="ansi_dark"))


def stage_three(url: str, log_path: Path) -> None:
    client = Client(
        url, "Stage 3: headers, CORS, deadlines, HTTP and TLS enforced; BigQuery observed"
    )
    show_headers(client.call("GET", f"/predictions/{DAY}", "filtered on game_date (partition)"))
    client.call(
        "OPTIONS",
        f"/predictions/{DAY}",
        "CORS preflight from the allowed origin",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    client.call(
        "OPTIONS",
        f"/predictions/{DAY}",
        "CORS preflight from https://evil.example.net: refused",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "GET"},
    )
    client.call("GET", "/predictions/leaderboard", "no game_date filter: runs, warning logged")
    client.call("GET", "/odds", "requests.get() without timeout: Bastion applied one")
    client.call("GET", "/odds?insecure=1")
    client.call("GET", "/odds?feed=drip")
    client.call("GET", "/slow", "1 s route budget: 504 problem+json")
    client.call(
        "POST",
        "/csp-reports",
        "a browser's CSP violation report: accepted",
        data=json.dumps(LEGACY_REPORT),
        headers={"Content-Type": "application/csp-report"},
    )
    client.call(
        "POST",
        "/csp-reports",
        "a malformed report: rejected",
        data="{",
        headers={"Content-Type": "application/csp-report"},
    )
    console.print(client.table)


def stage_four(url: str, bq: LocalBigQuery) -> None:
    client = Client(url, "Stage 4: BigQuery enforced too")
    client.call("GET", f"/predictions/{DAY}", "the filtered query still runs")
    client.call("GET", "/predictions/leaderboard")
    bq.requests.clear()
    client.call("GET", "/players/lebronjames/season")
    console.print(client.table)
    sent = [c.get("jobTimeoutMs") for c in bq.requests.jobs_created() if "season report" in str(c)]
    cancels = len(bq.requests.cancelled_job_ids())
    console.print(
        f"The report job (held RUNNING 6 s by the local server) was sent with "
        f"jobTimeoutMs={sent[0] if sent else 'none'}, inside the 3 s request deadline; "
        f"jobs.cancel calls the BigQuery server saw for it: {cancels}.",
        soft_wrap=True,
    )


def print_warnings(log_path: Path) -> None:
    warnings = bastion_warnings(log_path)
    console.print(f"[bold]Bastion's warnings in the service log ({log_path.name}):[/bold]")
    for line in warnings:
        console.print(f"  {line}", markup=False, soft_wrap=True)


def print_timeouts(log_path: Path) -> None:
    match = re.search(r"timeouts: .*", log_path.read_text(errors="replace"))
    console.print(f"gunicorn: {match.group(0) if match else '(timeouts line not found)'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out", help="output directory")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    telemetry = out / "telemetry.jsonl"
    telemetry.unlink(missing_ok=True)
    started = time.monotonic()

    console.rule("Bastion demo")
    console.print(
        "A Flask service shaped like the prediction worker, under gunicorn, against the "
        "project's local BigQuery server (seeded, partitioned tables) and a local odds feed. "
        "The whole Bastion integration is three lines at the top of examples/demo/service.py:"
    )
    show_wrapping()
    with LocalBigQuery(project=PROJECT) as bq, Peer() as peer:
        seed_demo(bq)
        bq.add_rule(match="season report", running_seconds=6.0)  # a slow report job
        bq.add_rule(match="ORDER BY confidence", running_seconds=0.4)  # over the 0.3 s "long"
        console.print(f"local BigQuery: {bq.url} (project {PROJECT}); odds feed: {peer.url}\n")

        console.rule("Stage 3 (deploy/stages/stage-3.env)")
        log3 = out / "service-stage-3.log"
        with service(3, out, bq, peer) as url:
            print_timeouts(log3)
            stage_three(url, log3)
        print_warnings(log3)

        console.rule("Stage 4 (deploy/stages/stage-4.env)")
        log4 = out / "service-stage-4.log"
        with service(4, out, bq, peer) as url:
            stage_four(url, bq)
        print_warnings(log4)

        console.rule("Cost advisor: the tracker's three materialized views")
        stage_costs(console, bq, PROJECT, out)

    shown = telemetry.relative_to(ROOT) if telemetry.is_relative_to(ROOT) else telemetry
    console.rule(f"Telemetry ({shown})")
    records = summary.read(telemetry)
    console.print(summary.span_table(records))
    console.print(summary.bigquery_table(records))
    console.print(summary.http_table(records))
    console.print(summary.metrics_table(records))
    console.print(
        Panel(
            f"{len(summary.spans(records))} spans, {len(summary.emitted_metric_names(records))} "
            f"metrics written; every process stopped; {time.monotonic() - started:.1f}s.",
            title="done",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
