"""The report intake against what Chromium actually sends, behind real servers.

Chromium's Reporting API posts all of a page's queued reports of the last minute (up
to 100) as one ``application/reports+json`` array of ~750-byte reports; ``report-uri``
posts one ``application/csp-report`` per violation. The bodies below have the fields
and sizes Chromium's have (a noisy page's reports differ only in line, column, sample).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from bastion.instrumentation.jsonl import log_records, metric_points
from tests.servers import Server, gunicorn, uvicorn

PATH = "/csp-reports"
REPORTS = "application/reports+json"
POLICY = (
    "default-src 'self'; script-src 'nonce-bastionNoncePlaceholder00' 'strict-dynamic' "
    "'report-sample'; style-src 'self' 'nonce-bastionNoncePlaceholder00' 'report-sample'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; "
    "report-uri /csp-reports; report-to csp-endpoint"
)


def chrome_report(i: int, *, pad: int = 0) -> dict[str, Any]:
    """One CSP violation as Chromium's Reporting API sends it."""
    page = f"https://props.example.com/players/{i}?season=2026"
    return {
        "age": 12 + i,
        "body": {
            "blockedURL": "inline",
            "columnNumber": 9 + i,
            "disposition": "report",
            "documentURL": page,
            "effectiveDirective": "script-src-elem",
            "lineNumber": 40 + i,
            "originalPolicy": POLICY + " " * pad,
            "referrer": "https://props.example.com/",
            "sample": f"console.log('inline {i}')",
            "sourceFile": page,
            "statusCode": 200,
        },
        "type": "csp-violation",
        "url": page,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/156.0.0.0 Safari/537.36",
    }


def chrome_legacy(i: int, *, pad: int = 0) -> bytes:
    """One violation as Chromium posts it to ``report-uri`` (``application/csp-report``)."""
    page = f"https://props.example.com/players/{i}?season=2026"
    return compact(
        {
            "csp-report": {
                "document-uri": page,
                "referrer": "https://props.example.com/",
                "violated-directive": "script-src-elem",
                "effective-directive": "script-src-elem",
                "original-policy": POLICY + " " * pad,
                "disposition": "report",
                "blocked-uri": "inline",
                "line-number": 40 + i,
                "column-number": 9 + i,
                "source-file": page,
                "status-code": 200,
                "script-sample": f"console.log('inline {i}')",
            }
        }
    )


def compact(document: Any) -> bytes:
    """JSON as Chromium serialises it (no spaces)."""
    return json.dumps(document, separators=(",", ":")).encode()


def batch(count: int) -> bytes:
    return compact([chrome_report(i) for i in range(count)])


def post(server: Server, body: bytes, content_type: str = REPORTS) -> requests.Response:
    return requests.post(
        server.url + PATH, data=body, headers={"Content-Type": content_type}, timeout=10
    )


def metric_sums(path: Path, name: str, attribute: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for point in metric_points(path, name):
        key = point.attributes[attribute]
        sums[key] = sums.get(key, 0) + point.value
    return sums


def test_chrome_s_reports_are_the_size_the_defaults_are_sized_for() -> None:
    size = len(compact(chrome_report(7)))
    assert 750 <= size <= 1000, size  # at least the ~750 bytes Chromium 156 sends
    assert len(batch(100)) < 262144 // 2  # a full queue fits the default twice over


@pytest.mark.slow
def test_gunicorn_takes_chrome_batches_keeps_the_first_n_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    out = tmp_path / "telemetry.jsonl"
    env = {
        "BASTION_CSP_REPORT_PATH": PATH,
        "BASTION_TELEMETRY_JSONL": str(out),
        "OTEL_SERVICE_NAME": "prediction-worker",
    }
    oversized = [chrome_report(0), chrome_report(1, pad=9000), chrome_report(2)]
    with gunicorn("tests.apps.csp_app:app", tmp_path, env=env) as server:
        answers = {
            "20": post(server, batch(20)),  # 15 kB: got 413 under the old whole-body limit
            "60": post(server, batch(60)),  # 45 kB: more than 32 reports got 400
            "150": post(server, batch(150)),  # over the 100 kept
            "big": post(server, compact(oversized)),
            "legacy": post(
                server,
                json.dumps({"csp-report": {"effective-directive": "img-src"}}).encode(),
                "application/csp-report",
            ),
            "huge": post(server, b"[" + b" " * 300_000 + b"]"),  # over the batch bytes
        }
        log = server.log()
    status = {name: answer.status_code for name, answer in answers.items()}
    assert status == {"20": 204, "60": 204, "150": 204, "big": 204, "legacy": 204, "huge": 413}
    assert "Traceback" not in log
    kept = metric_sums(out, "bastion.csp.reports", "bastion.csp.directive")
    assert kept == {"script-src-elem": 20 + 60 + 100 + 2, "img-src": 1}
    dropped = metric_sums(out, "bastion.csp.dropped", "bastion.reason")
    assert dropped == {"batch_full": 50, "too_large": 1}
    rejected = metric_sums(out, "bastion.csp.rejected", "bastion.reason")
    assert rejected == {"too_large": 1}
    lines = [r["body"] for r in log_records(out) if r["body"].startswith("CSP report batch")]
    assert sorted(lines) == [
        "CSP report batch: kept 100, dropped 50 batch_full (BASTION_CSP_REPORT_BATCH_MAX_"
        "REPORTS=100, BASTION_CSP_REPORT_MAX_BYTES=8192)",
        "CSP report batch: kept 2, dropped 1 too_large (BASTION_CSP_REPORT_BATCH_MAX_"
        "REPORTS=100, BASTION_CSP_REPORT_MAX_BYTES=8192)",
    ]


@pytest.mark.slow
def test_limits_per_report_and_per_batch_are_separate_settings(tmp_path: Path) -> None:
    env = {
        "BASTION_CSP_REPORT_PATH": PATH,
        "BASTION_CSP_REPORT_MAX_BYTES": "1024",
        "BASTION_CSP_REPORT_BATCH_MAX_BYTES": "20000",
        "BASTION_CSP_REPORT_BATCH_MAX_REPORTS": "5",
        "BASTION_CSP_REPORT_RATE_PER_MINUTE": "1000",
    }
    one = chrome_legacy(1)
    with gunicorn("tests.apps.csp_app:app", tmp_path, env=env) as server:
        assert post(server, batch(20)).status_code == 204  # 15 kB: one batch, not one report
        assert post(server, batch(30)).status_code == 413  # 22 kB: over the batch bytes
        assert post(server, one, "application/csp-report").status_code == 204
        padded = chrome_legacy(1, pad=600)
        assert post(server, padded, "application/csp-report").status_code == 413
        log = server.log()
    assert "kept 5, dropped 15 batch_full" in log


@pytest.mark.slow
def test_uvicorn_takes_a_chrome_batch_and_its_answer_may_be_read_cross_origin(
    tmp_path: Path,
) -> None:
    env = {"BASTION_CSP_REPORT_PATH": PATH, "BASTION_CSP_REPORT_URI": PATH}
    with uvicorn("tests.apps.csp_protected_asgi_app:app", tmp_path, env=env) as server:
        accepted = post(server, batch(60))
        legacy = post(
            server,
            chrome_legacy(1),
            "application/csp-report",
        )
        full = post(server, batch(120))
        page = requests.get(server.url + "/", timeout=10)
        log = server.log()
    for answer in (accepted, legacy, full):
        assert answer.status_code == 204
        assert answer.headers["cross-origin-resource-policy"] == "cross-origin"
        assert answer.headers["x-content-type-options"] == "nosniff"  # headers layer outside
    assert "kept 100, dropped 20 batch_full" in log
    assert page.headers["cross-origin-resource-policy"] == "same-origin"
    # plain http: report-uri only (Chromium ignores report-uri next to report-to)
    assert page.headers["content-security-policy"].endswith("report-uri /csp-reports")
    assert "reporting-endpoints" not in page.headers


@pytest.mark.slow
def test_gunicorn_protected_intake_answer_is_cross_origin(tmp_path: Path) -> None:
    env = {"BASTION_CSP_REPORT_PATH": PATH, "BASTION_CSP_REPORT_URI": PATH}
    with gunicorn("tests.apps.csp_protected_app:app", tmp_path, env=env) as server:
        accepted = requests.post(
            server.url + PATH,
            data=batch(55),
            headers={"Content-Type": REPORTS, "Origin": "null"},
            timeout=10,
        )
        page = requests.get(server.url + "/", timeout=10)
    assert accepted.status_code == 204
    assert accepted.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert page.headers["Cross-Origin-Resource-Policy"] == "same-origin"


def test_a_batch_limit_below_the_report_limit_fails_at_startup_naming_both() -> None:
    from bastion.settings import Settings, SettingsError

    try:
        Settings.from_env(
            {"BASTION_CSP_REPORT_MAX_BYTES": "65536", "BASTION_CSP_REPORT_BATCH_MAX_BYTES": "4096"}
        )
    except SettingsError as error:
        message = str(error)
    else:
        raise AssertionError("accepted a batch limit below the report limit")
    assert "BASTION_CSP_REPORT_BATCH_MAX_BYTES=4096" in message
    assert "at least BASTION_CSP_REPORT_MAX_BYTES (65536)" in message
