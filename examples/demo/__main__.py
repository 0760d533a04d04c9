"""``python -m examples.demo`` (``make demo``): the rollout of ``deploy/`` on six services.

1. Starts, in this process and on loopback, the project's local BigQuery server (seeded
   with partitioned tables shaped like the platform's) and the external odds feed the
   scraper calls (http, and https with an untrusted certificate).
2. For each rollout stage 0 → 4 (``deploy/stages/stage-N.env``), starts the six services
   of ``deploy/services.yaml`` (``examples/demo/services/``, each a Flask app with the
   README's three lines) under gunicorn, runs the same calls against them
   (``examples.demo.scenario``), stops them, and prints what changed since the stage
   before: answers, headers, Bastion's guard counters and log lines, the BigQuery jobs'
   cost caps. Time runs at 1/50 (``examples.demo.rollout``).
3. The cost advisor on the tracker's three materialized views (``examples.demo.costs``).
4. Prints the stages side by side, and writes every answer and counter to
   ``demo-out/stages.json`` (what ``tests/test_demo.py`` checks against the runbook).

No cloud account, no network beyond loopback; every process it starts is stopped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bastion.localbq import LocalBigQuery
from bastion.localbq.seed import seed_demo
from examples.demo import summary
from examples.demo.costs import stage_costs
from examples.demo.feed import Feed
from examples.demo.rollout import ROOT, SCALE, STAGES, Platform, Service, stage_env
from examples.demo.scenario import CALLS, WATCHED, Exchange, run

PROJECT = "nba-props-demo"
#: Metrics kept in stages.json but not printed per stage (one line per query class).
QUIET = (
    "bastion.bigquery.duration",
    "bastion.bigquery.bytes_billed",
    "bastion.http.client.timeouts_applied",
)
console = Console(width=140, highlight=False)


def seed(bq: LocalBigQuery) -> None:
    seed_demo(bq)
    # BigQuery holds a jobs.query/getQueryResults answer up to 10 s for a running job;
    # at the demo's time scale, 10 s / SCALE, like every other timeout.
    bq.default_wait_ms = int(10_000 / SCALE)
    bq.create_table(
        "raw.odds_lines_staging",
        [
            ("game_date", "DATE"),
            ("game_id", "STRING"),
            ("bookmaker", "STRING"),
            ("spread", "FLOAT64"),
            ("total", "FLOAT64"),
        ],
    )
    # The nightly rollup runs 150 s on the platform: over the write class (120 s), well
    # inside the analytics class (600 s).
    bq.add_rule(match="nightly rollup", running_seconds=150 / SCALE)
    # The season dashboard reads for 100 s: over the read class (60 s).
    bq.add_rule(match="season dashboard", running_seconds=100 / SCALE)


def bastion_log_lines(service: Service) -> list[str]:
    """Bastion's WARNING/ERROR lines in the service's log, trace ids and paths removed."""
    lines = []
    for line in service.log.read_text(errors="replace").splitlines():
        if re.match(r"(WARNING|ERROR) (bastion|instrumentation|middleware)\S*", line):
            line = re.sub(r" \[trace=[0-9a-f]+\]", "", line).replace(f"{ROOT}/", "")
            lines.append(line)
    return lines


def timeout_order(service: Service) -> str:
    """The line gunicorn's config logs at startup: deadline < gunicorn < Cloud Run."""
    found = re.search(r"timeouts: [^;\n]*", service.log.read_text(errors="replace"))
    return found.group(0) if found else ""


def cost_caps(bq: LocalBigQuery) -> list[dict[str, str]]:
    """Service, statement start and ``maximumBytesBilled`` of every query job sent."""
    caps = []
    for config in bq.requests.jobs_created():
        query = config.get("query", {})
        labels = config.get("labels") or query.get("labels") or {}
        sql = " ".join(str(query.get("query", "")).split())
        caps.append(
            {
                "service": str(labels.get("bastion-service", "?")),
                "statement": sql[:40],
                "maximumBytesBilled": str(query.get("maximumBytesBilled", "")),
            }
        )
    return caps


def run_stage(platform: Platform, bq: LocalBigQuery, stage: int) -> dict[str, Any]:
    bq.requests.clear()
    started = time.monotonic()
    with platform.stage(stage) as services:
        up = time.monotonic() - started
        exchanges = run({name: s.url for name, s in services.items()})
    return {
        "stage": stage,
        "env": stage_env(stage),
        "seconds_to_start": round(up, 2),
        "settings": {  # each service's Bastion variables as it got them (time-scaled)
            name: {k: v for k, v in platform.env(name, stage).items() if k.startswith("BASTION_")}
            for name in services
        },
        "exchanges": [e.to_dict() for e in exchanges],
        "counters": {
            name: summary.bastion_totals(summary.read(s.telemetry)) for name, s in services.items()
        },
        "log": {name: bastion_log_lines(s) for name, s in services.items()},
        "timeouts": {name: timeout_order(s) for name, s in services.items()},
        "jobs": cost_caps(bq),
    }


def cell(exchange: dict[str, Any]) -> str:
    status = str(exchange["status"])
    if exchange["content_type"].startswith("application/problem+json"):
        status += " problem+json"
    elif exchange["status"] >= 500 and "text/html" in exchange["content_type"]:
        status += " html"
    return f"{status} {exchange['seconds']:.1f}s"


def print_stage(result: dict[str, Any], before: dict[str, Any] | None) -> None:
    stage = result["stage"]
    modes = ", ".join(
        f"{k.removeprefix('BASTION_')}={v}"
        for k, v in result["env"].items()
        if k.count("_") == 1  # the guard modes
    )
    console.rule(f"Stage {stage}: {modes}")
    console.print(f"six services up under gunicorn in {result['seconds_to_start']:.1f}s")
    if before is None:  # the same in every stage
        for name, line in result["timeouts"].items():
            console.print(f"  {name}: {line}", markup=False)
    previous = {(e["service"], e["request"]): e for e in (before or {}).get("exchanges", [])}
    pairs = [(e, previous.get((e["service"], e["request"]))) for e in result["exchanges"]]
    common = set.intersection(*(header_change(e, old) for e, old in pairs))
    if common:
        console.print(f"Headers on every answer since the stage before: {' '.join(sorted(common))}")
    table = Table(title_justify="left", show_lines=False)
    for column in ("service", "request", "status", "what", "changed since the stage before"):
        table.add_column(column, overflow="fold")
    for exchange, old in pairs:
        table.add_row(
            exchange["service"],
            exchange["request"],
            cell(exchange),
            exchange["what"],
            describe_change(exchange, old, common),
        )
    console.print(table)
    counters = stage_counters(result)
    if counters:
        console.print("[bold]Bastion's counters[/bold] (service: metric{attributes} total):")
        for line in counters:
            console.print(f"  {line}", markup=False, soft_wrap=True)
    kinds: dict[str, list[str]] = {}
    for found in result["log"].values():
        for line in found:  # one entry per kind: numbers masked, not a call site's line
            kinds.setdefault(re.sub(r"(?<!\.py:)\b\d[\w.-]*", "#", line), []).append(line)
    if kinds:
        console.print(f"[bold]Bastion's log lines[/bold] ({len(kinds)} kinds):")
        for lines in sorted(kinds.values()):
            count = f" (x{len(lines)})" if len(lines) > 1 else ""
            console.print(f"  {shorten(lines[0])}{count}", markup=False, soft_wrap=True)
    caps: dict[str, set[int]] = {}
    for job in result["jobs"]:
        if job["maximumBytesBilled"]:
            caps.setdefault(job["service"], set()).add(int(job["maximumBytesBilled"]))
    shown = [f"{name} {', '.join(size(c) for c in sorted(cs))}" for name, cs in caps.items()]
    console.print("maximumBytesBilled sent: " + ("; ".join(shown) if shown else "none"))


def size(count: int) -> str:
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} B"


def header_change(exchange: dict[str, Any], old: dict[str, Any] | None) -> set[str]:
    """``+Name`` for each header added since the stage before, ``-Name`` removed."""
    now, then = set(exchange["headers"]), set(old["headers"]) if old else set()
    return {f"+{name}" for name in now - then} | {f"-{name}" for name in then - now}


def describe_change(exchange: dict[str, Any], old: dict[str, Any] | None, common: set[str]) -> str:
    notes = []
    if old is not None and old["status"] != exchange["status"]:
        notes.append(f"was {old['status']}")
    own = header_change(exchange, old) - common
    if old is not None and own:
        notes.append(" ".join(sorted(own)))
    problem = Exchange(**exchange).problem()
    if problem is not None:
        notes.append(f"{problem.get('title', '')}: {problem.get('detail', '')}"[:140])
    return "; ".join(notes) or "-"


def stage_counters(result: dict[str, Any]) -> list[str]:
    lines = []
    for service, counters in result["counters"].items():
        for name, total in sorted(counters.items()):
            if total and not name.startswith(QUIET):
                lines.append(f"{service}: {name} {total:g}")
    return lines


def shorten(line: str, limit: int = 220) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def print_matrix(results: list[dict[str, Any]]) -> None:
    table = Table(title="Every call, stage by stage", title_justify="left")
    table.add_column("service")
    table.add_column("request", overflow="fold")
    for result in results:
        table.add_column(f"stage {result['stage']}")
    rows: dict[tuple[str, str], list[str]] = {}
    for result in results:
        for exchange in result["exchanges"]:
            rows.setdefault((exchange["service"], exchange["request"]), []).append(
                cell(exchange).rsplit(" ", 1)[0]
            )
    for (service, request), cells in rows.items():
        table.add_row(service, request, *cells)
    console.print(table)
    headers = Table(title="Headers on the worker's answer, stage by stage", title_justify="left")
    headers.add_column("header")
    for result in results:
        headers.add_column(f"stage {result['stage']}")
    probe = [
        next(e for e in r["exchanges"] if e["service"] == "prediction-worker") for r in results
    ]
    for name in WATCHED:
        headers.add_row(name, *("sent" if name in e["headers"] else "-" for e in probe))
    console.print(headers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out", help="output directory")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    console.rule("Bastion demo: the rollout of deploy/ on six services")
    console.print(
        f"Six Flask services shaped like the platform's ({', '.join(CALLS)}), each with the "
        "README's three lines (configure(), protect(Flask(__name__)), instrument_all(app)), "
        "under gunicorn with deploy/services.yaml and deploy/stages/stage-N.env, against "
        f"the local BigQuery server and a fake external feed. Time runs at 1/{SCALE:g}."
    )
    results: list[dict[str, Any]] = []
    with LocalBigQuery(project=PROJECT) as bq, Feed(slow_seconds=40 / SCALE) as feed:
        seed(bq)
        platform = Platform(out, bigquery_url=bq.url, project=PROJECT, feed=feed)
        for stage in STAGES:
            results.append(run_stage(platform, bq, stage))
            print_stage(results[-1], results[-2] if len(results) > 1 else None)
        console.rule("Cost advisor: the tracker's three materialized views")
        stage_costs(console, bq, PROJECT, out)
    console.rule("The stages side by side")
    print_matrix(results)
    (out / "stages.json").write_text(json.dumps(results, indent=1))
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    console.print(
        f"Every answer, counter and log line: {shown}/stages.json; logs and telemetry per "
        f"stage and service under {shown}/stage-N/. Every process stopped; "
        f"{time.monotonic() - started:.1f}s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
