"""``python -m examples.demo`` as CI runs it: the six services through rollout stages 0-4
under gunicorn, each stage held to deploy/README.md's promises (the ``slow`` tests, on the
answers, metrics and log lines the run recorded in ``stages.json``), and the deploy/ metric
names held against what that run really emitted."""

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
from typing import Any

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
        path = out / "stages.json"
        self.stages: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
        self.records = [
            record
            for telemetry in sorted(out.glob("stage-*/*.jsonl"))
            for record in summary.read(telemetry)
        ]

    def stage(self, number: int) -> Stage:
        return Stage(next(s for s in self.stages if s["stage"] == number))


class Stage:
    """One stage's record: every answer the demo's client got, Bastion's metrics and log
    lines per service, the BigQuery jobs the services sent."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.exchanges: list[dict[str, Any]] = record["exchanges"]

    def answer(self, service: str, request: str) -> dict[str, Any]:
        found = [e for e in self.exchanges if e["service"] == service and e["request"] == request]
        assert len(found) == 1, (service, request, [e["request"] for e in self.exchanges])
        return found[0]

    def count(self, service: str, metric: str, **attributes: str) -> float:
        """Total of ``metric`` over the stage, on points carrying ``attributes``."""
        total = 0.0
        for key, value in self.record["counters"][service].items():
            name, _, rest = key.partition("{")
            have = dict(item.split("=", 1) for item in rest.rstrip("}").split(",") if item)
            if name == metric and all(have.get(k) == v for k, v in attributes.items()):
                total += value
        return total

    def log(self, service: str) -> list[str]:
        return list(self.record["log"][service])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("demo-out")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "OTEL_"))}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--out", str(out)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), "COLUMNS": "140"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return DemoRun(out, result, time.monotonic() - started)


def test_the_demo_exits_cleanly(demo: DemoRun) -> None:
    assert demo.result.returncode == 0, demo.stdout[-3000:] + demo.result.stderr[-3000:]
    assert "Every process stopped" in demo.stdout
    assert [s["stage"] for s in demo.stages] == [0, 1, 2, 3, 4]
    print(f"make demo took {demo.seconds:.1f}s")


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


def test_every_service_has_the_readme_three_lines_and_no_bastion_code() -> None:
    for module in (ROOT / "examples/demo/services").glob("[!_]*.py"):
        source = module.read_text()
        assert "configure()\napp = protect(Flask(__name__))\ninstrument_all(app)\n" in source
        # business code: no error handler, no timeout, no Bastion exception caught
        assert "errorhandler" not in source and "timeout=" not in source, module.name
        assert "except" not in source, module.name


def test_the_output_shows_each_stage_and_the_stages_side_by_side(demo: DemoRun) -> None:
    out = demo.stdout
    for stage in range(5):
        assert re.search(rf"Stage {stage}: HEADERS=\w+, CORS=\w+", out), stage
    assert out.count("six services up under gunicorn") == 5
    # services.yaml's timeouts at the demo's 1/50, in the order gunicorn's config checks
    assert "prediction-worker: timeouts: Bastion deadline 2s < gunicorn 7s < Cloud Run 120s" in out
    assert "Every call, stage by stage" in out and "Headers on the worker's answer" in out
    assert re.search(r"POST /predict/2026-01-20\s+│ 200\s+│ 200\s+│ 200\s+│ 504", out)
    assert "maximumBytesBilled sent: none" in out  # stages 0-3
    assert "$ bastion queries" in out and "$ bastion views" in out


# --- the runbook's promises (deploy/README.md), stage by stage ---------------------------

SCRAPE = ("scrapers", "POST /scrape/odds/2026-01-20")
SLOW_FEED = ("scrapers", "POST /scrape/injuries")  # 40 s page, 30 s default read timeout
INSECURE = ("scrapers", "POST /scrape/props-backfill")  # verify=False
TRICKLE = ("scrapers", "POST /scrape/live-lines")  # outlives the caller's 1.5 s budget
MERGE = ("raw-processor", "POST /process/odds/2026-01-20")
UNFILTERED = ("raw-processor", "GET /health")  # no partition filter
ROLLUP = ("analytics-processor", "POST /rollup")  # CTAS, 150 s
DASHBOARD = ("analytics-processor", "GET /dashboards/leaders")
SEASON = ("analytics-processor", "GET /dashboards/season")  # a 100 s read
PRECOMPUTE = ("precompute-processor", "POST /precompute/2026-01-20")
FAN_OUT = ("prediction-coordinator", "POST /start/2026-01-20")  # 4 worker calls of 45 s
SLATE = ("prediction-worker", "POST /predict/2026-01-20")  # over the worker's 100 s
BUSINESS = [
    SCRAPE,
    SLOW_FEED,
    INSECURE,
    TRICKLE,
    MERGE,
    UNFILTERED,
    ROLLUP,
    DASHBOARD,
    SEASON,
    PRECOMPUTE,
    FAN_OUT,
    SLATE,
]
CONSOLE_PREFLIGHT = (
    "analytics-processor",
    "OPTIONS /dashboards/leaders from console.platform.example",
)
FOREIGN_PREFLIGHT = ("analytics-processor", "OPTIONS /dashboards/leaders from evil.example.net")
REPORTS = ("prediction-coordinator", "POST /csp-reports from console.platform.example")
MALFORMED_REPORT = ("prediction-coordinator", "POST /csp-reports")
ENFORCED_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options")
OBSERVED = {"bastion.mode": "observe", "bastion.outcome": "observed"}
CUT = {"bastion.mode": "enforce", "bastion.outcome": "504"}


def is_problem(answer: dict[str, Any], status: int, kind: str = "about:blank") -> bool:
    """An RFC 9457 answer from protect(): that status, that problem type."""
    if not answer["content_type"].startswith("application/problem+json"):
        return False
    problem = json.loads(answer["body"])
    return bool(answer["status"] == status == problem["status"] and problem["type"] == kind)


def problem_type(name: str) -> str:
    return f"tag:bastion,2026:problem/{name}"


def call_site(module: str, text: str) -> str:
    """``module:line`` of the demo service's line holding ``text``."""
    lines = (ROOT / "examples/demo/services" / module).read_text().splitlines()
    return f"{module}:{next(n for n, line in enumerate(lines, 1) if text in line)}"


@pytest.mark.slow
def test_stage_0_is_the_baseline_every_call_succeeds_and_bastion_adds_nothing(
    demo: DemoRun,
) -> None:
    stage = demo.stage(0)
    for call in BUSINESS:
        assert stage.answer(*call)["status"] == 200, call
    for exchange in stage.exchanges:
        assert not set(exchange["headers"]) & {
            *ENFORCED_HEADERS,
            "Content-Security-Policy-Report-Only",
        }
    assert stage.answer(*REPORTS)["status"] == 404  # no intake
    assert "Access-Control-Allow-Origin" not in stage.answer(*CONSOLE_PREFLIGHT)["headers"]
    assert stage.answer(*FOREIGN_PREFLIGHT)["status"] == 200  # Flask's own OPTIONS
    assert all(not counters for counters in stage.record["counters"].values())


@pytest.mark.slow
def test_stage_1_observes_changes_nothing_but_the_report_only_csp(demo: DemoRun) -> None:
    before, stage = demo.stage(0), demo.stage(1)
    for call in [*BUSINESS, CONSOLE_PREFLIGHT, FOREIGN_PREFLIGHT]:
        assert stage.answer(*call)["status"] == before.answer(*call)["status"], call
    for call in BUSINESS:
        headers = stage.answer(*call)["headers"]
        assert "Content-Security-Policy-Report-Only" in headers, call
        assert not set(headers) & set(ENFORCED_HEADERS), call
    # the browser's reports reach the intake: Chrome's batch of 40, all counted
    assert stage.answer(*REPORTS)["status"] == 204
    assert stage.count("prediction-coordinator", "bastion.csp.reports") == 40
    assert stage.answer(*MALFORMED_REPORT)["status"] == 400
    assert stage.count("prediction-coordinator", "bastion.csp.rejected") == 1
    # what stages 2-4 will do: recorded (counter and log line), not done
    assert stage.count("analytics-processor", "bastion.cors.refused", **{"bastion.mode": "observe"})
    assert stage.count("prediction-worker", "bastion.deadline.exceeded", **OBSERVED) == 1
    assert stage.count("scrapers", "bastion.deadline.exceeded", **OBSERVED) == 1
    observe = {"bastion.mode": "observe"}
    assert stage.count("scrapers", "bastion.http.client.deadline_cuts", **observe) == 1
    assert stage.count("scrapers", "bastion.tls.insecure", **{"bastion.decision": "observed"})
    assert stage.count("raw-processor", "bastion.bigquery.unpartitioned_queries", **observe)
    # the feed page slower than the read timeout: the cut stage 3 makes, one line per site
    cuts = {**observe, "bastion.http.timeout_source": "default"}
    assert stage.count("scrapers", "bastion.http.client.timeout_cuts", **cuts) >= 1
    would_cut = [line for line in stage.log("scrapers") if "would cut it at the default" in line]
    assert any(call_site("scrapers.py", "FEED}/injuries") in line for line in would_cut), would_cut
    # the coordinator's 45 s worker calls have their own timeout: nothing to cut
    upstream = {"bastion.http.timeout_source": "upstream"}
    assert (
        stage.count("prediction-coordinator", "bastion.http.client.timeout_cuts", **upstream) == 0
    )
    # the season dashboard: a long read (the route's class), which stage 4 stops
    read = {"bastion.bq.timeout_class": "read"}
    assert stage.count("analytics-processor", "bastion.bigquery.long_queries", **read) == 1
    assert any("verify=False" in line for line in stage.log("scrapers"))
    assert any("observe mode, left running" in line for line in stage.log("prediction-worker"))
    assert any(
        "without a filter on its partition column" in line for line in stage.log("raw-processor")
    )
    assert all(not job["maximumBytesBilled"] for job in stage.record["jobs"])


@pytest.mark.slow
def test_stage_2_enforces_headers_and_cors_and_nothing_else(demo: DemoRun) -> None:
    before, stage = demo.stage(1), demo.stage(2)
    for call in BUSINESS:
        answer = stage.answer(*call)
        assert answer["status"] == before.answer(*call)["status"], call
        assert set(ENFORCED_HEADERS) <= set(answer["headers"]), call
        assert "Content-Security-Policy-Report-Only" not in answer["headers"]
    # the policy stage 1 sent report-only is the one enforced now; over plain http with
    # report-uri only (Chromium ignores Reporting-Endpoints on http origins)
    for call in BUSINESS:
        policy = stage.answer(*call)["headers"]["Content-Security-Policy"]
        assert policy == before.answer(*call)["headers"]["Content-Security-Policy-Report-Only"]
        assert "report-uri /csp-reports" in policy and "report-to" not in policy
        assert "Reporting-Endpoints" not in stage.answer(*call)["headers"]
    # the intake's answer may be read from any page's context
    assert stage.answer(*REPORTS)["headers"]["Cross-Origin-Resource-Policy"] == "cross-origin"
    allowed = stage.answer(*CONSOLE_PREFLIGHT)
    assert allowed["status"] == 204
    assert allowed["headers"]["Access-Control-Allow-Origin"] == "https://console.platform.example"
    assert stage.answer(*FOREIGN_PREFLIGHT)["status"] == 403
    assert stage.count("analytics-processor", "bastion.cors.refused", **{"bastion.mode": "enforce"})
    assert stage.answer(*REPORTS)["status"] == 204
    # deadlines still observed: the slate over its budget answers 200, counted again
    assert stage.count("prediction-worker", "bastion.deadline.exceeded", **OBSERVED) == 1


@pytest.mark.slow
def test_stage_3_cuts_what_stages_1_and_2_recorded(demo: DemoRun) -> None:
    stage = demo.stage(3)
    # the deadline: "would 504" in stages 1-2, a 504 problem+json now, at the budget
    slate = stage.answer(*SLATE)
    assert is_problem(slate, 504)
    budget = float(stage.record["settings"]["prediction-worker"]["BASTION_DEADLINE_SECONDS"])
    assert budget == 100 / 50  # services.yaml's 100 s at the demo's time scale
    assert budget <= slate["seconds"] < budget + 1.5
    assert stage.count("prediction-worker", "bastion.deadline.exceeded", **CUT) == 1
    # the trickling feed: a would-be deadline cut in stages 1-2, cut at the caller's 1.5 s
    trickle = stage.answer(*TRICKLE)
    assert is_problem(trickle, 504)
    assert 1.5 <= trickle["seconds"] < 1.5 + 1.5
    enforce = {"bastion.mode": "enforce"}
    assert stage.count("scrapers", "bastion.http.client.deadline_cuts", **enforce) == 1
    # TLS: the verify=False call observed in stages 1-2 is refused
    assert stage.count("scrapers", "bastion.tls.insecure", **{"bastion.decision": "refused"}) == 1
    assert is_problem(stage.answer(*INSECURE), 500, problem_type("insecure-tls"))
    # the slow feed page: cut at the default read timeout, as stages 1-2 recorded; the
    # app leaves requests' ReadTimeout unhandled (Flask's own 500)
    cut = {"bastion.mode": "enforce", "bastion.http.timeout_source": "default"}
    assert stage.count("scrapers", "bastion.http.client.timeout_cuts", **cut) >= 1
    slow = stage.answer(*SLOW_FEED)
    assert slow["status"] == 500 and not slow["content_type"].startswith("application/problem")
    # the coordinator's calls to the worker run on their own read timeout and succeed
    fan_out = stage.answer(*FAN_OUT)
    assert fan_out["status"] == 200
    assert json.loads(fan_out["body"])["worker_statuses"] == [200] * 4
    upstream = {"bastion.http.timeout_source": "upstream"}
    assert (
        stage.count("prediction-coordinator", "bastion.http.client.timeout_cuts", **upstream) == 0
    )
    assert (
        stage.count(
            "prediction-coordinator",
            "bastion.http.client.timeouts_applied",
            **{"bastion.http.timeout_source": "upstream"},
        )
        == 4
    )
    # what stage 3 does not touch: BigQuery observed (the unfiltered health check runs)
    for call in (SCRAPE, MERGE, UNFILTERED, ROLLUP, DASHBOARD, SEASON, PRECOMPUTE):
        assert stage.answer(*call)["status"] == 200, call
    assert all(not job["maximumBytesBilled"] for job in stage.record["jobs"])


@pytest.mark.slow
def test_stage_4_enforces_bigquery_refusals_and_cost_caps(demo: DemoRun) -> None:
    stage = demo.stage(4)
    refusals = {"bastion.reason": "unpartitioned"}
    assert stage.count("raw-processor", "bastion.bigquery.refusals", **refusals) == 1
    assert is_problem(stage.answer(*UNFILTERED), 500, problem_type("unpartitioned-query"))
    # the 100 s season read, long in stages 1-3, stopped at its route's class (read, 60 s)
    assert is_problem(stage.answer(*SEASON), 504, problem_type("query-timeout"))
    read = {"bastion.bq.timeout_class": "read"}
    assert stage.count("analytics-processor", "bastion.bigquery.timeouts", **read) == 1
    assert stage.count("analytics-processor", "bastion.bigquery.cancellations", **read) == 1
    # the rest of the processors' work (load, MERGEs, the 150 s rollup in its analytics
    # class) still succeeds
    for call in (SCRAPE, MERGE, ROLLUP, DASHBOARD, PRECOMPUTE, FAN_OUT):
        assert stage.answer(*call)["status"] == 200, call
    assert stage.count("analytics-processor", "bastion.bigquery.timeouts") == 1
    # every query job carries a cap: its class's from stage-4.env
    caps = {job["maximumBytesBilled"] for job in stage.record["jobs"]}
    assert caps and "" not in caps
    # read 100 GB, write 500 GB, merge 1 TB, analytics 5 TB
    assert caps == {"100000000000", "500000000000", "1000000000000", "5000000000000"}


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
