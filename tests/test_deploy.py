"""deploy/: manifests, stages, gunicorn timeouts, collector, dashboards and alert rules,
each checked by the tool that will consume it where one runs here (the official dashboard
types, promtool, Bastion's settings parser, gunicorn itself)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from bastion.middleware.deadline.gunicorn import gunicorn_config
from bastion.middleware.routes import RoutePatterns
from bastion.settings import Mode, Settings, flag_table
from tests.servers import BIN, ROOT, free_port, wait_for_port

DEPLOY = ROOT / "deploy"
SERVICES = (
    "scrapers",
    "raw-processor",
    "analytics-processor",
    "precompute-processor",
    "prediction-coordinator",
    "prediction-worker",
)
GUARDS = ("headers", "cors", "deadline", "http", "tls", "bigquery")
ENFORCED_FROM = {"headers": 2, "cors": 2, "deadline": 3, "http": 3, "tls": 3, "bigquery": 4}

# The metric contract (preamble): name -> (kind, unit, attributes).
CONTRACT: dict[str, tuple[str, str, frozenset[str]]] = {
    "bastion.cors.refused": ("counter", "", frozenset({"bastion.mode"})),
    "bastion.deadline.exceeded": (
        "counter",
        "",
        frozenset({"http.route", "bastion.mode", "bastion.outcome"}),
    ),
    "bastion.bigquery.duration": (
        "histogram",
        "s",
        frozenset({"bastion.bq.timeout_class", "bastion.outcome"}),
    ),
    "bastion.bigquery.bytes_billed": ("histogram", "By", frozenset({"bastion.bq.timeout_class"})),
    "bastion.bigquery.timeouts": ("counter", "", frozenset({"bastion.bq.timeout_class"})),
    "bastion.bigquery.cancellations": ("counter", "", frozenset({"bastion.bq.timeout_class"})),
    "bastion.bigquery.long_queries": ("counter", "", frozenset({"bastion.bq.timeout_class"})),
    "bastion.bigquery.unpartitioned_queries": (
        "counter",
        "",
        frozenset({"bastion.bq.table", "bastion.mode"}),
    ),
    "bastion.bigquery.refusals": ("counter", "", frozenset({"bastion.reason"})),
    "bastion.http.client.timeouts_applied": ("counter", "", frozenset()),
    "bastion.http.client.deadline_cuts": ("counter", "", frozenset()),
    "bastion.http.client.timeout_cuts": (
        "counter",
        "",
        frozenset({"bastion.mode", "bastion.http.timeout_source", "bastion.http.phase"}),
    ),
    "bastion.tls.insecure": ("counter", "", frozenset({"bastion.decision", "server.address"})),
    "bastion.csp.reports": ("counter", "", frozenset({"bastion.csp.directive"})),
    "bastion.csp.rejected": ("counter", "", frozenset({"bastion.reason"})),
    "bastion.csp.dropped": ("counter", "", frozenset({"bastion.reason"})),
}


@pytest.fixture(scope="module")
def render() -> ModuleType:
    sys.path.insert(0, str(DEPLOY))
    try:
        return importlib.import_module("render")
    finally:
        sys.path.remove(str(DEPLOY))


def manifest_paths() -> list[Path]:
    return sorted((DEPLOY / "cloudrun").glob("stage-*/*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def app_env(manifest: dict[str, Any]) -> dict[str, str]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    app = next(c for c in containers if c["name"] == "app")
    return {item["name"]: item["value"] for item in app["env"]}


# --- generated files ------------------------------------------------------------------


def test_committed_manifests_and_dashboards_are_what_render_produces(render: ModuleType) -> None:
    stale = [str(p) for p, text in render.outputs() if not p.exists() or p.read_text() != text]
    assert stale == [], "run: python deploy/render.py"
    assert len(manifest_paths()) == 5 * len(SERVICES)


def test_every_service_has_a_manifest_per_stage() -> None:
    for stage in range(5):
        names = sorted(p.stem for p in (DEPLOY / "cloudrun" / f"stage-{stage}").glob("*.yaml"))
        assert names == sorted(SERVICES)


# --- env flags ------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_paths(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_env_flag_in_the_manifests_loads_through_the_settings_parser(path: Path) -> None:
    env = app_env(load(path))
    known = {name for name, _, _ in flag_table()}
    unknown = sorted(n for n in env if n.startswith("BASTION_") and n not in known)
    assert unknown == [], f"not Bastion settings (typos are silently ignored): {unknown}"
    others = {n for n in env if not n.startswith("BASTION_")}
    assert others <= {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_METRIC_EXPORT_INTERVAL",
        "GUNICORN_THREADS",
        "CLOUD_RUN_TIMEOUT_SECONDS",
    }
    settings = Settings.from_env(env)  # raises SettingsError naming any bad value
    assert all(settings.sources[n] == "env" for n in env if n in known)


@pytest.mark.parametrize("stage", range(5))
def test_stages_move_the_guards_from_off_to_observe_to_enforce(stage: int) -> None:
    for service in SERVICES:
        settings = Settings.from_env(
            app_env(load(DEPLOY / f"cloudrun/stage-{stage}/{service}.yaml"))
        )
        for guard in GUARDS:
            expected = (
                Mode.OFF
                if stage == 0
                else Mode.ENFORCE
                if stage >= ENFORCED_FROM[guard]
                else Mode.OBSERVE
            )
            assert getattr(settings, guard) is expected, (stage, service, guard)
        assert settings.csp_report_path == ("/csp-reports" if stage else "")
        # stage 4 caps bytes billed per class (maximum_bytes_billed, enforce only)
        caps = [settings.max_bytes_billed_for(c) for c in ("read", "write", "merge", "analytics")]
        if stage == 4:
            assert all(cap is not None and cap >= 10**10 for cap in caps), (service, caps)
        else:
            assert caps == [None] * 4, (stage, service)
        # CORS acts where the runbook switches it on: origins listed, nothing to warn about
        assert settings.cors_origins, service
        assert settings.warnings() == [], (stage, service)
        # What the stage file says: no CSP at 0, report-only at 1, enforced from 2.
        assert csp_header_sent(settings) == (
            None
            if stage == 0
            else "content-security-policy-report-only"
            if stage == 1
            else "content-security-policy"
        ), (stage, service)


def csp_header_sent(settings: Settings) -> str | None:
    """The name of the CSP header a JSON response gets under these settings."""
    from bastion.middleware.protect import protect

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    got: list[list[tuple[str, str]]] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    protect(app, settings.replace(deadline=Mode.OFF))(
        environ, lambda status, headers, exc_info=None: got.append(headers)
    )
    names = [n.lower() for n, _ in got[0] if n.lower().startswith("content-security-policy")]
    assert len(names) <= 1
    return names[0] if names else None


def test_moving_one_stage_changes_only_the_guard_flags_and_the_stage_label() -> None:
    for service in SERVICES:
        for stage in range(1, 5):
            before = load(DEPLOY / f"cloudrun/stage-{stage - 1}/{service}.yaml")
            after = load(DEPLOY / f"cloudrun/stage-{stage}/{service}.yaml")
            changed = {
                k
                for k in app_env(before).keys() | app_env(after).keys()
                if app_env(before).get(k) != app_env(after).get(k)
            }
            assert changed and all(k.startswith("BASTION_") for k in changed)
            for doc in (before, after):  # everything else is equal
                doc["metadata"]["labels"].pop("bastion-stage")
                doc["spec"]["template"]["metadata"]["labels"].pop("bastion-stage")
                containers = doc["spec"]["template"]["spec"]["containers"]
                next(c for c in containers if c["name"] == "app").pop("env")
            assert before == after


def test_the_analytics_processor_classes_its_routes_in_every_stage() -> None:
    """Health check and dashboards read, the rollup analytics, by route: no service-wide
    pin (which gave the health check 600 s)."""
    for stage in range(5):
        for service in SERVICES:
            env = app_env(load(DEPLOY / f"cloudrun/stage-{stage}/{service}.yaml"))
            settings = Settings.from_env(env)
            assert settings.bq_default_class == ""
            if service != "analytics-processor":
                assert settings.bq_route_classes == {}
                continue
            patterns = RoutePatterns(settings.bq_route_classes)
            assert patterns.match("/health") == ("/health", "read")
            assert patterns.match("/dashboards/daily-summary") == ("/dashboards/", "read")
            assert patterns.match("/rollup") == ("/rollup", "analytics")


# --- timeouts -------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_paths(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_timeouts_are_ordered_deadline_gunicorn_cloud_run(path: Path) -> None:
    manifest = load(path)
    env = app_env(manifest)
    cloud_run = manifest["spec"]["template"]["spec"]["timeoutSeconds"]
    settings = Settings.from_env(env)
    assert float(env["CLOUD_RUN_TIMEOUT_SECONDS"]) == cloud_run
    # what bastion.instrumentation.gunicorn_conf computes from the same variables
    timeout = gunicorn_config(settings, cloud_run_timeout=cloud_run)["timeout"]
    assert settings.deadline_seconds < timeout < cloud_run


def _gunicorn_with_deploy_config(
    env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--config",
            "python:bastion.instrumentation.gunicorn_conf",  # as the manifests run it
            "--bind",
            f"127.0.0.1:{port}",  # the config binds 0.0.0.0:$PORT; tests stay on loopback
            "tests.apps.csp_app:app",
        ],
        cwd=ROOT,
        env={"PATH": str(BIN), "PYTHONPATH": str(ROOT), "PORT": str(port), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, port


def test_the_gunicorn_config_applies_the_ordered_timeouts(tmp_path: Path) -> None:
    env = app_env(load(DEPLOY / "cloudrun/stage-3/prediction-worker.yaml"))
    process, port = _gunicorn_with_deploy_config(env, tmp_path)
    try:
        wait_for_port(port, process)
    finally:
        process.terminate()
        process.wait(timeout=15)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "timeouts: Bastion deadline 100s < gunicorn 105s < Cloud Run 120s" in log
    assert "Using worker: gthread" in log


def test_the_gunicorn_config_refuses_to_start_with_timeouts_out_of_order(tmp_path: Path) -> None:
    env = {"BASTION_DEADLINE_SECONDS": "200", "CLOUD_RUN_TIMEOUT_SECONDS": "120"}
    process, _ = _gunicorn_with_deploy_config(env, tmp_path)
    assert process.wait(timeout=30) != 0
    log = (tmp_path / "gunicorn.log").read_text()
    # gunicorn prints a python: config's error as "Error: <message>", without the traceback.
    assert "Error: gunicorn's --timeout (205s) must be shorter than the Cloud Run request" in log
    assert "must be shorter than the Cloud Run request timeout (120s)" in log


# --- collector ------------------------------------------------------------------------


def test_the_collector_pipelines_use_only_defined_components_and_the_app_endpoint() -> None:
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        for section in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(section, [])) <= set(config[section]), section
    assert set(config["service"]["extensions"]) <= set(config["extensions"])
    endpoint = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for path in manifest_paths():
        assert app_env(load(path))["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{endpoint}"
    # the sidecar's health check is what the manifests' startup probe polls
    assert config["extensions"]["health_check"]["endpoint"].endswith(":13133")


# --- dashboards and rules -------------------------------------------------------------


def test_the_cloud_monitoring_dashboard_parses_with_the_official_types() -> None:
    from google.cloud.monitoring_dashboard_v1.types import Dashboard

    text = (DEPLOY / "dashboards/cloud-monitoring.json").read_text()
    dashboard = Dashboard.from_json(text)  # unknown or mistyped fields raise
    tiles = dashboard.mosaic_layout.tiles
    assert len(tiles) >= 10
    queries = [
        ds.time_series_query.prometheus_query for t in tiles for ds in t.widget.xy_chart.data_sets
    ]
    assert all(queries)
    assert json.loads(Dashboard.to_json(dashboard))["displayName"].startswith("Bastion")


def test_the_grafana_dashboard_is_well_formed() -> None:
    dashboard = json.loads((DEPLOY / "dashboards/grafana.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: run `make tools` (installs Debian's prometheus package)"
    return found


def test_prometheus_rules_pass_promtool_check_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(DEPLOY / "prometheus/bastion-rules.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_rules_fire_on_bastion_series_in_promtool_unit_tests() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(DEPLOY / "prometheus/bastion-rules.test.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def queries_in_deploy() -> dict[str, list[str]]:
    cloud = json.loads((DEPLOY / "dashboards/cloud-monitoring.json").read_text())
    grafana = json.loads((DEPLOY / "dashboards/grafana.json").read_text())
    rules = yaml.safe_load((DEPLOY / "prometheus/bastion-rules.yaml").read_text())
    return {
        "cloud-monitoring": [
            ds["timeSeriesQuery"]["prometheusQuery"]
            for tile in cloud["mosaicLayout"]["tiles"]
            for ds in tile["widget"]["xyChart"]["dataSets"]
        ],
        "grafana": [t["expr"] for p in grafana["panels"] for t in p["targets"]],
        "rules": [r["expr"] for g in rules["groups"] for r in g["rules"]],
    }


def metric_names_used(query: str) -> set[str]:
    """Series names: what is left once label lists (``by (...)``) and matchers (``{...}``)
    are taken out."""
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)|\{[^}]*\}", " ", query)
    return set(re.findall(r"\b(bastion_[a-z0-9_]+)", bare))


def label_names_used(query: str) -> set[str]:
    names = set()
    for group in re.findall(r"by \(([^)]*)\)", query):
        names |= {n.strip() for n in group.split(",")}
    names |= set(re.findall(r"([a-z_]+)=~?\"", query))
    return names


def series_names(name: str, kind: str, unit: str, render: ModuleType) -> set[str]:
    base = render.prometheus_name(name, unit, kind)
    if kind == "histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return {base}


def test_dashboards_and_rules_use_only_contract_metrics_and_labels(render: ModuleType) -> None:
    allowed: set[str] = set()
    labels = {"job", "instance", "le"}
    for name, (kind, unit, attributes) in CONTRACT.items():
        allowed |= series_names(name, kind, unit, render)
        labels |= {a.replace(".", "_") for a in attributes}
    for source, queries in queries_in_deploy().items():
        used = set().union(*map(metric_names_used, queries))
        assert used and used <= allowed, (source, sorted(used - allowed))
        used_labels = set().union(*map(label_names_used, queries))
        assert used_labels <= labels, (source, sorted(used_labels - labels))
    # every panel topic the issue names is on both dashboards
    for source in ("cloud-monitoring", "grafana"):
        text = " ".join(queries_in_deploy()[source])
        for needed in (
            "bastion_bigquery_duration_seconds_bucket",
            "bastion_bigquery_bytes_billed_sum",
            "bastion_bigquery_unpartitioned_queries_total",
            "bastion_bigquery_long_queries_total",
            "bastion_bigquery_timeouts_total",
            "bastion_bigquery_cancellations_total",
            'bastion_outcome="504"',
            "bastion_tls_insecure_total",
            "bastion_csp_reports_total",
            "bastion_http_client_timeout_cuts_total",
        ):
            assert needed in text, (source, needed)


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        # the translator's own documented examples (prometheus/otlptranslator)
        ("http.server.request.duration", "s", "histogram", "http_server_request_duration_seconds"),
        ("requests.count", "1", "counter", "requests_count_total"),
        ("memory.usage", "By", "gauge", "memory_usage_bytes"),
        # Bastion's
        ("bastion.bigquery.bytes_billed", "By", "histogram", "bastion_bigquery_bytes_billed"),
        ("bastion.csp.reports", "{report}", "counter", "bastion_csp_reports_total"),
        ("bastion.deadline.exceeded", "", "counter", "bastion_deadline_exceeded_total"),
    ],
)
def test_prometheus_names_follow_the_collector_translation(
    render: ModuleType, name: str, unit: str, kind: str, expected: str
) -> None:
    assert render.prometheus_name(name, unit, kind) == expected


def test_the_runbook_timeout_table_matches_the_manifests() -> None:
    runbook = (DEPLOY / "README.md").read_text()
    for service in SERVICES:
        manifest = load(DEPLOY / f"cloudrun/stage-4/{service}.yaml")
        settings = Settings.from_env(app_env(manifest))
        cloud_run = manifest["spec"]["template"]["spec"]["timeoutSeconds"]
        timeout = gunicorn_config(settings, cloud_run_timeout=cloud_run)["timeout"]
        row = f"| {service} | {settings.deadline_seconds:g} s | {timeout} s | {cloud_run} s |"
        assert row in runbook
