"""The CSP / Reporting API intake behind real servers, plus its bounded-memory contract."""

from __future__ import annotations

import io
import json
import logging
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bastion.instrumentation.jsonl import log_records, metric_points, read_records, span_records
from bastion.middleware._csp_intake import TokenBuckets
from bastion.middleware.csp_reports import CSPReportMiddleware
from bastion.settings import Settings
from tests.servers import Server, gunicorn, uvicorn

PATH = "/csp-reports"
LEGACY_TYPE = "application/csp-report"
LEGACY = {
    "csp-report": {
        "document-uri": "https://props.example.com/players/lebron",
        "referrer": "",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "original-policy": "default-src 'none'; report-uri /csp-reports",
        "blocked-uri": "https://evil.example.net/x.js",
        "disposition": "report",
        "status-code": 200,
    }
}
REPORTING = [
    {
        "type": "csp-violation",
        "age": 12,
        "url": "https://props.example.com/odds",
        "user_agent": "Mozilla/5.0",
        "body": {
            "documentURL": "https://props.example.com/odds",
            "blockedURL": "inline",
            "effectiveDirective": "style-src-attr",
            "disposition": "enforce",
            "statusCode": 200,
        },
    },
    {
        "type": "deprecation",
        "url": "https://props.example.com/odds",
        "body": {"id": "unload", "message": "unload is deprecated"},
    },
]


def post(server: Server, body: bytes | str, content_type: str, **headers: str) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    return requests.post(
        server.url + PATH,
        data=data,
        headers={"Content-Type": content_type, **headers},
        timeout=10,
    )


@pytest.fixture(scope="module")
def flask_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("csp")
    out = tmp / "telemetry.jsonl"
    env = {
        "BASTION_CSP_REPORT_PATH": PATH,
        "BASTION_CSP_REPORT_MAX_BYTES": "1024",
        "BASTION_CSP_REPORT_RATE_PER_MINUTE": "1000",
        "BASTION_TELEMETRY_JSONL": str(out),
        "OTEL_SERVICE_NAME": "prediction-worker",
    }
    with gunicorn("tests.apps.csp_app:app", tmp, env=env) as server:
        yield server, out


# --- accepted -------------------------------------------------------------------------


def test_both_formats_are_accepted_with_204_and_other_paths_reach_the_app(
    flask_server: tuple[Server, Path],
) -> None:
    server, _ = flask_server
    assert post(server, json.dumps(LEGACY), "application/csp-report").status_code == 204
    answer = post(server, json.dumps(REPORTING), "application/reports+json; charset=utf-8")
    assert answer.status_code == 204 and answer.content == b""
    assert requests.get(server.url + "/", timeout=10).json() == {"ok": "yes"}


def test_a_cross_origin_preflight_is_allowed_without_credentials(
    flask_server: tuple[Server, Path],
) -> None:
    server, _ = flask_server
    answer = requests.options(
        server.url + PATH,
        headers={
            "Origin": "https://props.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in answer.headers


# --- refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{not json", "application/csp-report", 400),  # malformed
        (b"\xff\xfe\x00", "application/csp-report", 400),  # not UTF-8
        ('{"csp-report": "nope"}', "application/csp-report", 400),  # wrong shape
        ('{"something": {}}', "application/csp-report", 400),
        ("[]", "application/reports+json", 400),  # empty batch
        ('[{"type": "csp-violation", "body": {}}]', "application/reports+json", 400),
        ('{"type": "csp-violation"}', "application/reports+json", 400),  # not a list
        (json.dumps(LEGACY), "application/json", 415),  # wrong type
        (json.dumps(LEGACY), "text/plain", 415),
        ("x" * 2000, "application/csp-report", 413),  # over BASTION_CSP_REPORT_MAX_BYTES
    ],
)
def test_bad_reports_get_4xx(
    flask_server: tuple[Server, Path], body: str | bytes, content_type: str, status: int
) -> None:
    server, _ = flask_server
    assert post(server, body, content_type).status_code == status


def test_an_oversized_chunked_body_is_cut_at_the_limit(flask_server: tuple[Server, Path]) -> None:
    server, _ = flask_server

    def chunks() -> Iterator[bytes]:  # no Content-Length: requests sends it chunked
        yield b'{"csp-report": {"document-uri": "'
        for _ in range(100):
            yield b"a" * 100
        yield b'"}}'

    answer = requests.post(
        server.url + PATH,
        data=chunks(),
        headers={"Content-Type": "application/csp-report"},
        timeout=10,
    )
    assert answer.status_code == 413


def test_other_methods_get_405(flask_server: tuple[Server, Path]) -> None:
    server, _ = flask_server
    answer = requests.get(server.url + PATH, timeout=10)
    assert answer.status_code == 405 and "POST" in answer.headers["Allow"]


@pytest.mark.parametrize("length", ["abc", "-5", "9" * 40])
def test_a_malformed_content_length_never_reaches_the_app_or_raises(length: str) -> None:
    called: list[bool] = []
    settings = Settings(csp_report_path=PATH)
    middleware = CSPReportMiddleware.from_settings(lambda e, s: called.append(True) or [], settings)
    status: list[str] = []
    environ = {
        "PATH_INFO": PATH,
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/csp-report",
        "CONTENT_LENGTH": length,
        "REMOTE_ADDR": "203.0.113.9",
        "wsgi.input": io.BytesIO(b"{}"),
    }
    middleware(environ, lambda s, h: status.append(s))
    assert status and status[0][:3] in ("400", "413") and not called


# --- telemetry of accepted and refused reports ---------------------------------------


def test_valid_reports_become_log_records_span_events_and_counts(tmp_path: Path) -> None:
    out = tmp_path / "telemetry.jsonl"
    env = {
        "BASTION_CSP_REPORT_PATH": PATH,
        "BASTION_TELEMETRY_JSONL": str(out),
        "OTEL_SERVICE_NAME": "prediction-worker",
    }
    with gunicorn("tests.apps.csp_app:app", tmp_path, env=env) as server:
        for _ in range(3):
            assert post(server, json.dumps(LEGACY), "application/csp-report").status_code == 204
        assert post(server, json.dumps(REPORTING), "application/reports+json").status_code == 204
        weird = json.loads(json.dumps(LEGACY))
        weird["csp-report"]["effective-directive"] = "x-made-up\n-directive"
        weird["csp-report"]["blocked-uri"] = "https://a.example\nFAKE LOG LINE"
        assert post(server, json.dumps(weird), "application/csp-report").status_code == 204
        assert post(server, "{", "application/csp-report").status_code == 400
        assert post(server, "{}", "text/html").status_code == 415
        # nested deeper than the JSON parser goes: an ordinary, counted rejection
        assert post(server, "[" * 8000, "application/reports+json").status_code == 400
        assert post(server, '{"a":' * 1200 + "1" + "}" * 1200, LEGACY_TYPE).status_code == 400
        server_log = server.log()
    assert "Traceback" not in server_log
    records = list(read_records(out))
    assert not [r for r in log_records(records) if "intake failed" in r["body"]]

    counts: dict[str, float] = {}
    rejected: dict[str, float] = {}
    for point in metric_points(records):
        if point.name == "bastion.csp.reports":
            key = point.attributes["bastion.csp.directive"]
            counts[key] = counts.get(key, 0) + point.value
        if point.name == "bastion.csp.rejected":
            key = point.attributes["bastion.reason"]
            rejected[key] = rejected.get(key, 0) + point.value
    # the deprecation report is logged and traced but is not a CSP violation
    assert counts == {"script-src-elem": 3, "style-src-attr": 1, "other": 1}
    assert rejected == {"malformed": 1, "content_type": 1, "too_deep": 2}

    events = [
        event
        for span in span_records(records)
        if span["name"].startswith("POST")
        for event in span["events"]
    ]
    names = [e["name"] for e in events]
    assert names.count("bastion.csp-violation") == 5 and names.count("bastion.deprecation") == 1
    first = next(e for e in events if e["name"] == "bastion.csp-violation")
    assert first["attributes"]["bastion.csp.blocked_uri"] == "https://evil.example.net/x.js"
    assert first["attributes"]["bastion.csp.directive"] == "script-src-elem"

    logs = [r for r in log_records(records) if "blocked" in r["body"]]
    assert len(logs) == 6
    assert all("\n" not in r["body"] for r in logs)  # no log injection
    assert any("https://a.example?FAKE LOG LINE" in r["body"] for r in logs)
    assert all(r["trace_id"] != "0x" + "0" * 32 for r in logs)  # correlated with the span


def test_a_flood_from_one_client_gets_429_with_retry_after(tmp_path: Path) -> None:
    env = {"BASTION_CSP_REPORT_PATH": PATH, "BASTION_CSP_REPORT_RATE_PER_MINUTE": "5"}
    with gunicorn("tests.apps.csp_app:app", tmp_path, env=env) as server:
        statuses = [
            post(server, json.dumps(LEGACY), "application/csp-report").status_code
            for _ in range(20)
        ]
        # a forged X-Forwarded-For from an untrusted peer does not buy a new bucket
        forged = post(
            server, json.dumps(LEGACY), "application/csp-report", **{"X-Forwarded-For": "1.2.3.4"}
        )
    assert statuses[:5] == [204] * 5
    assert set(statuses[5:]) == {429}
    assert forged.status_code == 429 and int(forged.headers["Retry-After"]) >= 1


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(tmp_path: Path) -> None:
    env = {
        "BASTION_CSP_REPORT_PATH": PATH,
        "BASTION_CSP_REPORT_RATE_PER_MINUTE": "2",
        "BASTION_TRUSTED_PROXIES": "127.0.0.1",
    }
    with gunicorn("tests.apps.csp_app:app", tmp_path, env=env) as server:

        def send(client: str) -> int:
            return post(
                server, json.dumps(LEGACY), "application/csp-report", **{"X-Forwarded-For": client}
            ).status_code

        first = [send("198.51.100.7") for _ in range(3)]
        second = [send("198.51.100.8") for _ in range(3)]
    assert first == [204, 204, 429] and second == [204, 204, 429]


def test_the_asgi_intake_under_uvicorn(tmp_path: Path) -> None:
    env = {
        "BASTION_CSP_REPORT_PATH": PATH,
        "BASTION_CSP_REPORT_MAX_BYTES": "1024",
        "BASTION_CSP_REPORT_RATE_PER_MINUTE": "3",
    }
    with uvicorn("tests.apps.csp_asgi_app:app", tmp_path, env=env) as server:
        assert requests.get(server.url + "/", timeout=10).json() == {"ok": "yes"}
        assert post(server, json.dumps(REPORTING), "application/reports+json").status_code == 204
        assert post(server, "[1]", "application/reports+json").status_code == 400
        # refused on its Content-Length before it could take a token
        assert post(server, "x" * 5000, "application/csp-report").status_code == 413
        assert post(server, json.dumps(LEGACY), "application/csp-report").status_code == 204
        assert post(server, json.dumps(LEGACY), "application/csp-report").status_code == 429
        assert post(server, json.dumps(LEGACY), "text/plain").status_code == 415


# --- bounded memory -------------------------------------------------------------------


def test_memory_stays_bounded_under_10000_reports_from_10000_clients() -> None:
    settings = Settings(csp_report_path=PATH, csp_report_rate_per_minute=60)
    middleware = CSPReportMiddleware.from_settings(lambda e, s: [], settings, max_clients=1000)
    body = json.dumps(LEGACY).encode()

    def send(i: int) -> str:
        status: list[str] = []
        environ = {
            "PATH_INFO": PATH,
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": "application/csp-report",
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            "wsgi.input": io.BytesIO(body),
        }
        middleware(environ, lambda s, h: status.append(s))
        return status[0]

    # pytest keeps every captured log record: keep the intake's WARNINGs out of it, so
    # that what is measured is what the middleware itself holds on to.
    logger = logging.getLogger("bastion.csp")
    logger.propagate = False
    quiet = logging.NullHandler()
    logger.addHandler(quiet)
    try:
        for i in range(1000):  # warm up: fill the table once
            send(i)
        statuses = []
        tracemalloc.start(4)
        mine = [tracemalloc.Filter(True, "*/middleware/*", all_frames=True)]
        before = tracemalloc.take_snapshot().filter_traces(mine)
        for i in range(1000, 11000):
            statuses.append(send(i))
        after = tracemalloc.take_snapshot().filter_traces(mine)
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
        logger.propagate = True
        logger.removeHandler(quiet)
    assert set(statuses) == {"204 No Content"}
    assert len(middleware.intake.buckets) == 1000
    # measured: ~190 kB with the bounded table; an unbounded one holds ~2.8 MB here
    assert grown < 512 * 1024, f"grew {grown} bytes over 10,000 reports"


def test_token_bucket_refills_at_the_configured_rate() -> None:
    buckets = TokenBuckets(rate_per_minute=60, max_clients=2)
    assert [buckets.take("a", now=0.0) for _ in range(60)] == [0.0] * 60
    assert buckets.take("a", now=0.0) == pytest.approx(1.0)
    assert buckets.take("a", now=1.0) == 0.0  # one token back after a second
    buckets.take("b", now=1.0)
    buckets.take("c", now=1.0)  # the table holds two: "a" is forgotten
    assert len(buckets) == 2


def test_protect_mounts_the_intake_inside_the_security_headers_and_before_cors(
    tmp_path: Path,
) -> None:
    env = {
        "BASTION_CSP_REPORT_PATH": PATH,
        "BASTION_CSP_REPORT_URI": PATH,
        "BASTION_CORS_ORIGINS": "https://app.example.com",
    }
    with gunicorn("tests.apps.csp_protected_app:app", tmp_path, env=env) as server:
        accepted = post(server, json.dumps(LEGACY), "application/csp-report")
        # a browser on another origin preflights its report: the intake answers, not CORS
        preflight = requests.options(
            server.url + PATH,
            headers={
                "Origin": "https://props.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
            timeout=10,
        )
        page = requests.get(server.url + "/", timeout=10)
    assert accepted.status_code == 204
    assert accepted.headers["X-Content-Type-Options"] == "nosniff"  # headers layer outside
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert page.json() == {"ok": "yes"}
    assert PATH in page.headers["Content-Security-Policy"]  # browsers are told where to report
