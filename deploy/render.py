"""Render deploy/: Cloud Run manifests per stage and the two dashboards, from one source.

    python deploy/render.py            # rewrite deploy/cloudrun/ and deploy/dashboards/
    python deploy/render.py --check    # exit 1 if the committed files are stale (CI)

Inputs: ``deploy/services.yaml`` (the six services) and ``deploy/stages/stage-N.env``
(the guard modes of rollout stage N). Outputs, committed so they can be reviewed and
applied as they are (``gcloud run services replace deploy/cloudrun/stage-2/scrapers.yaml``):

* ``deploy/cloudrun/stage-N/<service>.yaml``: Knative Service manifests (app container
  under gunicorn + an OpenTelemetry Collector sidecar);
* ``deploy/dashboards/cloud-monitoring.json`` and ``deploy/dashboards/grafana.json``: the
  same panels, as PromQL over the Prometheus names the collector produces (see
  :func:`prometheus_name`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from bastion.middleware.deadline.gunicorn import gunicorn_config
from bastion.middleware.settings import MiddlewareSettings

DEPLOY = Path(__file__).resolve().parent
# gunicorn's config, from the installed package; it binds 0.0.0.0:$PORT (Cloud Run sets PORT).
GUNICORN_CONFIG = "python:bastion.instrumentation.gunicorn_conf"
STAGES = range(5)
STAGE_NAMES = {
    0: "off",
    1: "observe everything",
    2: "enforce headers and CORS",
    3: "enforce deadlines, HTTP and TLS",
    4: "enforce BigQuery",
}

# --- Prometheus names -------------------------------------------------------------------

# OTLP unit -> Prometheus unit suffix, as in the Collector's and Prometheus' translator
# (github.com/prometheus/otlptranslator, metric_namer.go), for the units Bastion uses.
_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "", "%": "percent"}


def prometheus_name(name: str, unit: str, kind: str) -> str:
    """The name the Collector's ``prometheus`` / ``googlemanagedprometheus`` exporters give
    an OpenTelemetry metric (UnderscoreEscapingWithSuffixes, their default): dots become
    underscores, the unit suffix is appended unless the name already holds it (so
    ``bastion.bigquery.bytes_billed`` in ``By`` stays ``bastion_bigquery_bytes_billed``),
    annotations in braces (``{report}``) add nothing, and monotonic counters end in
    ``_total``. ``kind`` is ``counter``, ``histogram``, ``gauge`` or ``updowncounter``.
    Histograms are then queried as ``<name>_bucket``, ``_sum`` and ``_count``."""
    tokens = [t for t in "".join(c if c.isalnum() or c == ":" else " " for c in name).split()]
    main = unit.split("/", 1)[0].strip()
    if main and "{" not in main:
        suffix = _UNIT_SUFFIX.get(main, main)
        if suffix and suffix not in tokens:
            tokens.append(suffix)
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    return "_".join(tokens)


# --- Cloud Run manifests ----------------------------------------------------------------


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SystemExit(f"{path}:{number}: expected NAME=value")
        values[key.strip()] = value.strip()
    return values


def service_env(
    name: str, service: Mapping[str, Any], defaults: Mapping[str, Any], stage: int
) -> dict[str, str]:
    env = {
        **defaults.get("env", {}),
        **read_env(DEPLOY / "stages" / f"stage-{stage}.env"),
        **service.get("env", {}),
        "CLOUD_RUN_TIMEOUT_SECONDS": str(service["timeout_seconds"]),
    }
    # What bastion.instrumentation.gunicorn_conf will compute: refuse to render a bad order.
    gunicorn_config(
        MiddlewareSettings.from_env(env), cloud_run_timeout=float(service["timeout_seconds"])
    )
    return {key: str(value) for key, value in env.items()}


def manifest(
    name: str, service: Mapping[str, Any], defaults: Mapping[str, Any], stage: int
) -> dict[str, Any]:
    def pick(key: str) -> Any:
        value = service.get(key, defaults[key])
        return value.format(name=name) if isinstance(value, str) else value

    env = service_env(name, service, defaults, stage)
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "labels": {"bastion-stage": str(stage)},
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": {"bastion-stage": str(stage)},
                    "annotations": {
                        "autoscaling.knative.dev/maxScale": str(pick("max_instances")),
                        "run.googleapis.com/execution-environment": "gen2",
                        # Start the collector first, so no early span is lost.
                        "run.googleapis.com/container-dependencies": json.dumps(
                            {"app": ["collector"]}
                        ),
                    },
                },
                "spec": {
                    "serviceAccountName": pick("service_account"),
                    "containerConcurrency": pick("concurrency"),
                    "timeoutSeconds": service["timeout_seconds"],
                    "containers": [
                        {
                            "name": "app",
                            "image": pick("image"),
                            "command": ["gunicorn"],
                            "args": ["--config", GUNICORN_CONFIG, service["app"]],
                            "ports": [{"name": "http1", "containerPort": 8080}],
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                            "resources": {"limits": {"cpu": pick("cpu"), "memory": pick("memory")}},
                            "startupProbe": {
                                "tcpSocket": {"port": 8080},
                                "periodSeconds": 2,
                                "failureThreshold": 30,
                            },
                        },
                        {
                            "name": "collector",
                            "image": pick("collector_image"),
                            "args": ["--config=/etc/otelcol/config.yaml"],
                            "volumeMounts": [
                                {"name": "otel-collector-config", "mountPath": "/etc/otelcol"}
                            ],
                            "resources": {"limits": {"cpu": "0.25", "memory": "256Mi"}},
                            "startupProbe": {
                                "httpGet": {"path": "/", "port": 13133},
                                "periodSeconds": 1,
                                "failureThreshold": 30,
                            },
                        },
                    ],
                    "volumes": [
                        {
                            "name": "otel-collector-config",
                            "secret": {
                                "secretName": "otel-collector-config",
                                "items": [{"key": "latest", "path": "config.yaml"}],
                            },
                        }
                    ],
                },
            },
            "traffic": [{"percent": 100, "latestRevision": True}],
        },
    }


def manifests() -> Iterator[tuple[Path, str]]:
    config = yaml.safe_load((DEPLOY / "services.yaml").read_text())
    defaults = config["defaults"]
    for stage in STAGES:
        for name, service in config["services"].items():
            header = (
                f"# Generated by deploy/render.py from services.yaml and stages/stage-{stage}.env:"
                f" do not edit.\n# Stage {stage}: {STAGE_NAMES[stage]}.\n"
            )
            body = yaml.safe_dump(
                manifest(name, service, defaults, stage), sort_keys=False, width=100
            )
            yield DEPLOY / "cloudrun" / f"stage-{stage}" / f"{name}.yaml", header + body


# --- dashboards -------------------------------------------------------------------------

Target = tuple[str, str]  # (PromQL, legend)
PANELS: list[tuple[str, str, list[Target]]] = [
    (
        "BigQuery duration p50 / p95 by timeout class",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le, bastion_bq_timeout_class) "
                "(rate(bastion_bigquery_duration_seconds_bucket[5m])))",
                "p50 {{bastion_bq_timeout_class}}",
            ),
            (
                "histogram_quantile(0.95, sum by (le, bastion_bq_timeout_class) "
                "(rate(bastion_bigquery_duration_seconds_bucket[5m])))",
                "p95 {{bastion_bq_timeout_class}}",
            ),
        ],
    ),
    (
        "BigQuery bytes billed per hour by service and class",
        "By",
        [
            (
                "sum by (job, bastion_bq_timeout_class) (increase(bastion_bigquery_bytes_billed_sum[1h]))",  # noqa: E501
                "{{job}} {{bastion_bq_timeout_class}}",
            )
        ],
    ),
    (
        "Unpartitioned queries by table (observe: would be refused in stage 4)",
        "1",
        [
            (
                "sum by (bastion_bq_table, bastion_mode) (increase(bastion_bigquery_unpartitioned_queries_total[1h]))",  # noqa: E501
                "{{bastion_bq_table}} ({{bastion_mode}})",
            )
        ],
    ),
    (
        "Long BigQuery queries by class",
        "1",
        [
            (
                "sum by (job, bastion_bq_timeout_class) (increase(bastion_bigquery_long_queries_total[1h]))",  # noqa: E501
                "{{job}} {{bastion_bq_timeout_class}}",
            )
        ],
    ),
    (
        "BigQuery timeouts and server-side cancellations",
        "1",
        [
            (
                "sum by (job, bastion_bq_timeout_class) (increase(bastion_bigquery_timeouts_total[5m]))",  # noqa: E501
                "timeouts {{job}} {{bastion_bq_timeout_class}}",
            ),
            (
                "sum by (job, bastion_bq_timeout_class) (increase(bastion_bigquery_cancellations_total[5m]))",  # noqa: E501
                "cancelled {{job}} {{bastion_bq_timeout_class}}",
            ),
        ],
    ),
    (
        "BigQuery refusals by reason (enforce)",
        "1",
        [
            (
                "sum by (job, bastion_reason) (increase(bastion_bigquery_refusals_total[5m]))",
                "{{job}} {{bastion_reason}}",
            )
        ],
    ),
    (
        "Deadline 504s by service and route",
        "1",
        [
            (
                'sum by (job, http_route) (increase(bastion_deadline_exceeded_total{bastion_outcome="504"}[5m]))',  # noqa: E501
                "504 {{job}} {{http_route}}",
            ),
            (
                'sum by (job, http_route) (increase(bastion_deadline_exceeded_total{bastion_outcome="observed"}[5m]))',  # noqa: E501
                "would 504 {{job}} {{http_route}}",
            ),
        ],
    ),
    (
        "Outbound HTTP: timeouts applied, timeout cuts (observe: would-be), deadline cuts",
        "1",
        [
            (
                "sum by (job) (increase(bastion_http_client_timeouts_applied_total[5m]))",
                "timeouts applied {{job}}",
            ),
            (
                "sum by (job) (increase(bastion_http_client_deadline_cuts_total[5m]))",
                "deadline cuts {{job}}",
            ),
            (
                "sum by (job, bastion_mode, bastion_http_timeout_source) "
                "(increase(bastion_http_client_timeout_cuts_total[5m]))",
                "timeout cuts {{job}} {{bastion_mode}} ({{bastion_http_timeout_source}})",
            ),
        ],
    ),
    (
        "TLS verification skipped, by decision and host",
        "1",
        [
            (
                "sum by (job, bastion_decision, server_address) (increase(bastion_tls_insecure_total[1h]))",  # noqa: E501
                "{{bastion_decision}} {{job}} -> {{server_address}}",
            )
        ],
    ),
    (
        "CSP violation reports by directive",
        "1",
        [
            (
                "sum by (job, bastion_csp_directive) (increase(bastion_csp_reports_total[1h]))",
                "{{job}} {{bastion_csp_directive}}",
            ),
            (
                "sum by (job, bastion_reason) (increase(bastion_csp_rejected_total[1h]))",
                "rejected {{job}} {{bastion_reason}}",
            ),
        ],
    ),
    (
        "CORS refusals",
        "1",
        [
            (
                "sum by (job, bastion_mode) (increase(bastion_cors_refused_total[5m]))",
                "{{job}} ({{bastion_mode}})",
            )
        ],
    ),
]

_GRAFANA_UNITS = {"s": "s", "By": "bytes", "1": "short"}


def cloud_monitoring_dashboard() -> dict[str, Any]:
    tiles = []
    for index, (title, unit, targets) in enumerate(PANELS):
        tiles.append(
            {
                "xPos": (index % 2) * 24,
                "yPos": (index // 2) * 16,
                "width": 24,
                "height": 16,
                "widget": {
                    "title": title,
                    "xyChart": {
                        "dataSets": [
                            {
                                "timeSeriesQuery": {"prometheusQuery": expr, "unitOverride": unit},
                                "plotType": "LINE",
                                # Cloud Monitoring interpolates ${label}, Grafana {{label}}
                                "legendTemplate": legend.replace("{{", "${").replace("}}", "}"),
                            }
                            for expr, legend in targets
                        ],
                        "yAxis": {"scale": "LINEAR"},
                    },
                },
            }
        )
    return {
        "displayName": "Bastion: guards across the six services",
        "mosaicLayout": {"columns": 48, "tiles": tiles},
        "labels": {"bastion": ""},
    }


def grafana_dashboard() -> dict[str, Any]:
    panels = []
    for index, (title, unit, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"x": (index % 2) * 12, "y": (index // 2) * 8, "w": 12, "h": 8},
                "fieldConfig": {"defaults": {"unit": _GRAFANA_UNITS[unit]}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
                    for n, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "uid": "bastion-guards",
        "title": "Bastion: guards across the six services",
        "tags": ["bastion"],
        "schemaVersion": 39,
        "time": {"from": "now-24h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
            ]
        },
        "panels": panels,
    }


def dashboards() -> Iterator[tuple[Path, str]]:
    for name, build in (
        ("cloud-monitoring", cloud_monitoring_dashboard),
        ("grafana", grafana_dashboard),
    ):
        yield DEPLOY / "dashboards" / f"{name}.json", json.dumps(build(), indent=2) + "\n"


def outputs() -> Iterator[tuple[Path, str]]:
    yield from manifests()
    yield from dashboards()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if committed files are stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print("stale (run python deploy/render.py):", *map(str, stale), sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
