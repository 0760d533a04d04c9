"""``BASTION_BQ_ROUTE_CLASSES``: the BigQuery timeout class per inbound route.

Real parts: a Flask service (tests/apps/bigquery_routes.py) under gunicorn, wrapped by
``protect`` and ``instrument_all``, sending its queries through the real BigQuery
client to the project's local BigQuery server, whose request log shows the
``jobTimeoutMs`` each job got; the spans come from the service's telemetry file. The
classes get distinct seconds (read 11, write 22, merge 33, analytics 44) so the job
timeout says which class applied.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bastion.instrumentation.jsonl import span_records
from bastion.localbq import LocalBigQuery
from bastion.middleware.routes import RoutePatterns
from bastion.settings import Settings, SettingsError
from tests.servers import BIN, ROOT, Server, free_port, gunicorn

P = "test-project"
CLASS_SECONDS = {"read": 11, "write": 22, "merge": 33, "analytics": 44}
# The analytics processor's map (deploy/services.yaml has the same shape).
ROUTE_CLASSES = (
    "/health=read,/dashboards/*=read,/rollups/<day>=analytics,/quick-rollups/*=analytics"
)


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _env(jsonl: Path, bq: LocalBigQuery, **extra: str) -> dict[str, str]:
    return {
        "BASTION_TEST_BQ_URL": bq.url,
        "BASTION_TEST_BQ_PROJECT": P,
        "BASTION_DEADLINE": "enforce",
        "BASTION_DEADLINE_SECONDS": "100",
        "BASTION_DEADLINE_MAX_SECONDS": "100",
        "BASTION_BIGQUERY": "enforce",
        "BASTION_BQ_ROUTE_CLASSES": ROUTE_CLASSES,
        **{f"BASTION_BQ_TIMEOUT_{c.upper()}": str(s) for c, s in CLASS_SECONDS.items()},
        "BASTION_TELEMETRY_JSONL": str(jsonl),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **extra,
    }


class Service:
    """The running service and what one request to it made the guard send."""

    def __init__(self, server: Server, bq: LocalBigQuery, jsonl: Path) -> None:
        self.server, self.bq, self.jsonl = server, bq, jsonl

    def job_config(self, path: str) -> dict[str, Any]:
        """GET ``path``; the one job configuration it sent to BigQuery."""
        self.bq.requests.clear()
        status, body = _get(self.server.url + path)
        assert status == 200, (path, body, self.server.log()[-3000:])
        (config,) = self.bq.requests.jobs_created()
        return config

    def job_timeout_ms(self, path: str) -> int:
        return int(self.job_config(path)["jobTimeoutMs"])

    def spans(self) -> list[dict[str, Any]]:
        """The guard's BigQuery spans so far, in the order they ended."""
        assert _get(self.server.url + "/flush")[0] == 200
        return [
            span["attributes"]
            for span in span_records(self.jsonl)
            if span["attributes"].get("db.system.name") == "gcp.bigquery"
        ]


def _start(bq: LocalBigQuery, tmp: Path, **extra: str) -> Iterator[Service]:
    bq.client().create_dataset("analytics", exists_ok=True)
    jsonl = tmp / "telemetry.jsonl"
    with gunicorn(
        "tests.apps.bigquery_routes:app",
        tmp,
        env=_env(jsonl, bq, **extra),
        worker_class="gthread",
        threads=2,
    ) as server:
        service = Service(server, bq, jsonl)
        # The port opens before the worker has imported the app: wait for it to serve.
        service.job_config("/health")
        yield service


@pytest.fixture
def service(bq_server: LocalBigQuery, tmp_path: Path) -> Iterator[Service]:
    yield from _start(bq_server, tmp_path)


@pytest.fixture
def pinned_service(bq_server: LocalBigQuery, tmp_path: Path) -> Iterator[Service]:
    """The analytics processor as deployed before: every query pinned to analytics."""
    yield from _start(bq_server, tmp_path, BASTION_BQ_DEFAULT_CLASS="analytics")


@pytest.fixture
def observing_service(bq_server: LocalBigQuery, tmp_path: Path) -> Iterator[Service]:
    yield from _start(bq_server, tmp_path, BASTION_BIGQUERY="observe")


# --- under gunicorn, through the real client -------------------------------------------


def test_each_route_gets_its_class_from_the_map(service: Service) -> None:
    # SELECTs of the health check and of every dashboard (a `*` segment): read.
    assert service.job_timeout_ms("/health") == 11_000
    assert service.job_timeout_ms("/dashboards/daily") == 11_000
    assert service.job_timeout_ms("/dashboards/weekly") == 11_000
    # The rollup's CTAS (the SQL alone says write) by its Flask route template: analytics.
    assert service.job_timeout_ms("/rollups/2026-12-01") == 44_000
    # The same CTAS on a route the map does not name: the statement's class.
    assert service.job_timeout_ms("/unmapped") == 22_000
    spans = service.spans()
    by_route = [
        (s.get("bastion.bq.route"), s["bastion.bq.timeout_class"], s["bastion.bq.class_source"])
        for s in spans[-5:]
    ]
    assert by_route == [
        ("/health", "read", "route"),
        ("/dashboards/<name>", "read", "route"),
        ("/dashboards/<name>", "read", "route"),
        ("/rollups/<day>", "analytics", "route"),
        ("/unmapped", "write", "sql"),
    ]
    patterns = [s.get("bastion.bq.class_pattern") for s in spans[-5:]]
    assert patterns == ["/health", "/dashboards/*", "/dashboards/*", "/rollups/<day>", None]


def test_per_call_choices_win_over_the_route(service: Service) -> None:
    # timeout_class() in the code, then the job label, beat the route's analytics.
    assert service.job_timeout_ms("/rollups/d?override=merge") == 33_000
    assert service.job_timeout_ms("/rollups/d?label=read") == 11_000
    # A timeout the caller wrote is kept whatever the class.
    assert service.job_timeout_ms("/rollups/d?explicit_ms=7000") == 7_000
    sources = [
        (s["bastion.bq.timeout_class"], s["bastion.bq.class_source"]) for s in service.spans()[-3:]
    ]
    assert sources == [("merge", "override"), ("read", "label"), ("analytics", "route")]


def test_the_request_deadline_caps_the_route_class(service: Service) -> None:
    # analytics is 44 s, but this route's deadline is 3 s (minus the 1 s margin).
    timeout = service.job_timeout_ms("/quick-rollups/d")
    assert 1_000 <= timeout <= 2_000
    (span,) = service.spans()[-1:]
    assert (span["bastion.bq.timeout_class"], span["bastion.bq.bound_by"]) == (
        "analytics",
        "deadline",
    )


def test_a_route_class_wins_over_the_service_default(pinned_service: Service) -> None:
    assert pinned_service.job_timeout_ms("/health") == 11_000
    assert pinned_service.job_timeout_ms("/rollups/d") == 44_000
    assert pinned_service.job_timeout_ms("/unmapped") == 44_000  # the service's default
    sources = [s["bastion.bq.class_source"] for s in pinned_service.spans()[-3:]]
    assert sources == ["route", "route", "service"]


def test_observe_shows_the_route_class_and_sends_nothing(observing_service: Service) -> None:
    for path in ("/health", "/rollups/d"):
        config = observing_service.job_config(path)
        assert "jobTimeoutMs" not in config  # observe sends the job as written
    health, rollup = observing_service.spans()[-2:]
    assert (health["bastion.bq.timeout_class"], health["bastion.bq.would_job_timeout_ms"]) == (
        "read",
        11_000,
    )
    assert (rollup["bastion.bq.class_source"], rollup["bastion.bq.class_pattern"]) == (
        "route",
        "/rollups/<day>",
    )
    assert rollup["bastion.bq.would_job_timeout_ms"] == 44_000


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("/health=slow", "unknown value 'slow'"),
        ("/health", "not PATTERN=VALUE"),
        ("health=read", "does not start with '/'"),
        ("/health=read,/health=write", "given twice"),
        ("/dash boards=read", "characters a URL path cannot match"),
    ],
)
def test_a_bad_map_stops_gunicorn_at_startup(
    bq_server: LocalBigQuery, tmp_path: Path, value: str, reason: str
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **_env(tmp_path / "t.jsonl", bq_server, BASTION_BQ_ROUTE_CLASSES=value),
    }
    argv = [str(BIN / "gunicorn"), "tests.apps.bigquery_routes:app", "--bind"]
    argv += [f"127.0.0.1:{free_port()}", "--workers", "1", "--graceful-timeout", "1"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=60, check=False)
    log = done.stdout.decode() + done.stderr.decode()
    assert done.returncode != 0, log[-2000:]
    assert "BASTION_BQ_ROUTE_CLASSES" in log and reason in log, log[-2000:]
    assert "PATTERN=read|write|merge|analytics" in log  # the allowed values


# --- the map itself --------------------------------------------------------------------


def test_settings_parse_render_and_reject_code_values() -> None:
    settings = Settings.from_env({"BASTION_BQ_ROUTE_CLASSES": ROUTE_CLASSES + ", /admin/=write"})
    assert settings.bq_route_classes["/rollups/<day>"] == "analytics"
    assert settings.bq_route_classes["/admin/"] == "write"
    again = Settings.from_env(
        {"BASTION_BQ_ROUTE_CLASSES": settings.as_env()["BASTION_BQ_ROUTE_CLASSES"]}
    )
    assert again.bq_route_classes == settings.bq_route_classes
    # A converter with arguments keeps its '=': the class is after the last one.
    odd = Settings.from_env({"BASTION_BQ_ROUTE_CLASSES": "/c/<string(length=2):code>=read"})
    assert odd.bq_route_classes == {"/c/<string(length=2):code>": "read"}
    with pytest.raises(SettingsError, match=r"BASTION_BQ_ROUTE_CLASSES.*unknown value 'fast'"):
        Settings(bq_route_classes={"/health": "fast"})


PATTERNS: Mapping[str, str] = {
    "/health": "exact",
    "/games/<int:game_id>": "template",
    "/games/*": "segment",
    "/games/*/odds": "segment-odds",
    "/export-*": "partial-segment",
    "/games/": "prefix",
    "/": "root",
}


@pytest.mark.parametrize(
    ("path", "template", "expected"),
    [
        ("/health", "/health", ("/health", "exact")),
        ("/health/", "", None),  # exact means exact
        ("/games/7", "/games/<int:game_id>", ("/games/<int:game_id>", "template")),
        ("/games/7", "/games/<game_id>", ("/games/*", "segment")),  # templates are exact
        ("/games/7/odds", "", ("/games/*/odds", "segment-odds")),
        ("/games/7/lines", "", ("/games/", "prefix")),  # '*' is one segment
        ("/games/", "", ("/games/", "prefix")),  # '*' is not empty
        ("/export-csv", "", ("/export-*", "partial-segment")),
        ("/export-", "", None),
        ("/", "", ("/", "root")),
        ("/other", "", None),
    ],
)
def test_pattern_kinds_and_their_order(
    path: str, template: str, expected: tuple[str, str] | None
) -> None:
    assert RoutePatterns(PATTERNS).match(path, template) == expected


def test_the_first_listed_segment_pattern_wins() -> None:
    first = RoutePatterns({"/a/*/c": "1", "/a/b/*": "2"})
    second = RoutePatterns({"/a/b/*": "2", "/a/*/c": "1"})
    assert first.match("/a/b/c") == ("/a/*/c", "1")
    assert second.match("/a/b/c") == ("/a/b/*", "2")


def test_regex_characters_in_a_pattern_are_literal() -> None:
    table = RoutePatterns({"/v1.0/*": "x", "/a+b": "y"})
    assert table.match("/v1.0/items") == ("/v1.0/*", "x")
    assert table.match("/v1x0/items") is None
    assert table.match("/a+b") == ("/a+b", "y")
    assert table.match("/aab") is None
