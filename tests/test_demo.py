"""``python -m examples.demo`` as CI runs it (smoke test), and the deploy/ metric names
held against what that run really emitted."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import psutil
import pytest
import yaml

from examples.demo import summary
from tests.servers import ROOT

DEPLOY = ROOT / "deploy"


class DemoRun:
    def __init__(self, out: Path, result: subprocess.CompletedProcess[str], seconds: float):
        self.out = out
        self.result = result
        self.seconds = seconds
        self.stdout = result.stdout
        self.records = summary.read(out / "telemetry.jsonl")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("demo-out")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "OTEL_"))}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--out", str(out)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), "COLUMNS": "110"},
        capture_output=True,
        text=True,
        timeout=120,  # the bar: under two minutes
        check=False,
    )
    return DemoRun(out, result, time.monotonic() - started)


def test_the_demo_exits_cleanly_within_two_minutes(demo: DemoRun) -> None:
    assert demo.result.returncode == 0, demo.stdout[-3000:] + demo.result.stderr[-3000:]
    assert demo.seconds < 120
    assert "every process stopped" in demo.stdout


def test_no_process_the_demo_started_is_left_running(demo: DemoRun) -> None:
    marker = str(demo.out)
    left = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in value for value in process.environ().values()):
                left.append((process.pid, process.info["cmdline"]))
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    assert left == []


def test_the_output_shows_what_a_user_needs_to_see(demo: DemoRun) -> None:
    out = demo.stdout
    # the three lines that wrap the service
    assert (
        "configure()" in out and "protect(Flask(__name__)" in out and "instrument_all(app)" in out
    )
    # the timeouts, in order
    assert re.search(r"timeouts: Bastion deadline 3s < gunicorn 8s < Cloud Run 10s", out)
    # response headers set by Bastion
    for header in ("Content-Security-Policy", "X-Frame-Options", "Cross-Origin-Opener-Policy"):
        assert re.search(rf"{header}\s+│.*│ Bastion", out), header
    # CORS: allowed preflight 204, foreign origin 403
    assert re.search(r"OPTIONS /predictions/2026-01-20\s+│ 204", out)
    assert re.search(r"OPTIONS /predictions/2026-01-20\s+│ 403", out)
    # the deadline's 504 at the 1 s route budget, and the outbound cut at 1 s
    # (under the 3 s default budget: the 1 s route budget and the 1 s scope did it)
    slow = re.search(r"GET /slow\s+│ 504\s+│ (\d+\.\d\d)s", out)
    assert slow and 1.0 <= float(slow.group(1)) < 2.5
    drip = re.search(r"GET /odds\?feed=drip\s+│ 504\s+│ (\d+\.\d\d)s │ DeadlineTimeout", out)
    assert drip and 1.0 <= float(drip.group(1)) < 2.5
    # the unpartitioned query: observed in stage 3 (200 + warning), refused in stage 4
    assert re.search(r"GET /predictions/leaderboard\s+│ 200", out)
    assert "without a filter on its partition column" in out and "(BASTION_BIGQUERY=observe)" in out
    assert re.search(r"GET /predictions/leaderboard\s+│ 422\s+│ [\d.]+s\s+│ Cannot query over", out)
    # TLS refusal, CSP intake
    assert "refused HTTPS request to 127.0.0.1 with verify=False" in out
    assert re.search(r"POST /csp-reports\s+│ 204", out) and re.search(
        r"POST /csp-reports\s+│ 400", out
    )
    # the slow job stopped by the deadline-derived jobTimeoutMs and cancelled server-side
    assert re.search(r"GET /players/lebronjames/season\s+│ 504", out)
    sent = re.search(r"was sent with jobTimeoutMs=(\d+), inside", out)
    assert sent and 0 < int(sent.group(1)) < 3000  # bounded by the request deadline
    # stopped server-side: by its jobTimeoutMs, or by Bastion's jobs.cancel at the deadline
    assert "Job timed out" in out or re.search(r"jobs\.cancel calls .*: [1-9]", out)
    # the telemetry summary
    for title in ("Spans (count by name and kind)", "BigQuery operations", "Metrics (totals"):
        assert title in out


def test_the_telemetry_file_holds_spans_metrics_and_correlated_logs(demo: DemoRun) -> None:
    spans = summary.spans(demo.records)
    client = [s for s in spans if s["kind"] == "SpanKind.CLIENT"]
    assert any(s["attributes"].get("bastion.bq.bytes_billed") for s in client)
    assert any(s["attributes"].get("bastion.outcome") == "refused" for s in client)
    server = {s["context"]["trace_id"] for s in spans if s["kind"] == "SpanKind.SERVER"}
    logs = [r for r in demo.records if r.get("type") == "log" and "blocked" in r.get("body", "")]
    assert logs and all(r["trace_id"] in server for r in logs)  # CSP log lines join their trace
    totals = summary.metric_totals(demo.records)
    assert totals[("bastion.csp.reports", "bastion.csp.directive", "script-src-elem")][0] == 1
    assert totals[("bastion.bigquery.refusals", "bastion.reason", "unpartitioned")][0] == 1


# --- deploy/ against the names this run emitted ----------------------------------------


@pytest.fixture(scope="module")
def render() -> ModuleType:
    sys.path.insert(0, str(DEPLOY))
    try:
        return importlib.import_module("render")
    finally:
        sys.path.remove(str(DEPLOY))


def deploy_queries() -> list[str]:
    cloud = json.loads((DEPLOY / "dashboards/cloud-monitoring.json").read_text())
    grafana = json.loads((DEPLOY / "dashboards/grafana.json").read_text())
    rules = yaml.safe_load((DEPLOY / "prometheus/bastion-rules.yaml").read_text())
    return [
        *(
            ds["timeSeriesQuery"]["prometheusQuery"]
            for tile in cloud["mosaicLayout"]["tiles"]
            for ds in tile["widget"]["xyChart"]["dataSets"]
        ),
        *(t["expr"] for p in grafana["panels"] for t in p["targets"]),
        *(r["expr"] for g in rules["groups"] for r in g["rules"]),
    ]


def test_every_metric_in_the_dashboards_and_rules_was_emitted_by_the_demo(
    demo: DemoRun, render: ModuleType
) -> None:
    emitted = summary.emitted_metric_names(demo.records)
    series: set[str] = set()
    for name, (kind, unit) in emitted.items():
        base = render.prometheus_name(name, unit, kind)
        series |= (
            {base, f"{base}_bucket", f"{base}_sum", f"{base}_count"}
            if kind == "histogram"
            else {base}
        )
    used = set()
    for query in deploy_queries():
        bare = re.sub(r"\b(by|without)\s*\([^)]*\)|\{[^}]*\}", " ", query)
        used |= set(re.findall(r"\b(bastion_[a-z0-9_]+)", bare))
    assert used, "no Bastion metric found in deploy/"
    assert sorted(used - series) == [], f"emitted: {sorted(emitted)}"
