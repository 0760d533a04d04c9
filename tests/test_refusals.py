"""Bastion's own refusals reach the client as RFC 9457 problem documents.

Real servers: a Flask service under gunicorn, a Starlette service and a bare ASGI app
under uvicorn (tests/apps/refusals_*.py), all wrapped by ``protect()`` only, with every
guard in enforce; the real BigQuery client against the project's local BigQuery server;
real loopback upstreams (an HTTPS server with a throwaway CA's certificate, a server
that never answers). Each refusal comes back with the status and problem type the
README documents, and without the query, table or host that the server log names; a
handler the app wrote wins; an ordinary bug still gets the framework's usual 500.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from bastion.localbq import LocalBigQuery
from bastion.middleware.refusals import (
    PROBLEM_TYPE_BASE,
    BastionRefusal,
    RefusalASGIMiddleware,
    problem_for,
)
from tests.apps.http_servers import AppServer, SilentServer
from tests.servers import Server, gunicorn, uvicorn

P = "test-project"
PROBLEM = "application/problem+json"
#: What each call's refusal answers, as README's table says: (status, type, title).
EXPECTED = {
    "unfiltered": (500, PROBLEM_TYPE_BASE + "unpartitioned-query", "Query refused by cost policy"),
    "slow-query": (504, PROBLEM_TYPE_BASE + "query-timeout", "Database query timed out"),
    "slow-query-default": (504, PROBLEM_TYPE_BASE + "query-timeout", "Database query timed out"),
    "insecure": (500, PROBLEM_TYPE_BASE + "insecure-tls", "Outbound call refused by TLS policy"),
    "silent": (504, "about:blank", "Gateway Timeout"),
}
ENFORCE = {
    "BASTION_DEADLINE": "enforce",
    "BASTION_DEADLINE_SECONDS": "3",
    "BASTION_BIGQUERY": "enforce",
    "BASTION_BQ_TIMEOUT_READ": "1",
    "BASTION_HTTP": "enforce",
    "BASTION_TLS": "enforce",
}
OBSERVE = {name: "observe" if value == "enforce" else value for name, value in ENFORCE.items()}


@pytest.fixture(scope="module")
def https() -> Iterator[AppServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    with AppServer(tls=context) as server:
        yield server


@pytest.fixture(scope="module")
def silent() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


@pytest.fixture
def env(bq_server: LocalBigQuery, https: AppServer, silent: SilentServer) -> dict[str, str]:
    bq_server.create_table(
        "nba.games", [("game_date", "DATE"), ("points", "INT64")], partition_field="game_date"
    )
    bq_server.insert_rows("nba.games", [{"game_date": "2026-01-01", "points": 3}])
    return {
        "BASTION_TEST_BQ_URL": bq_server.url,
        "BASTION_TEST_BQ_PROJECT": P,
        "BASTION_TEST_HTTPS_URL": https.url + "/ok",
        "BASTION_TEST_SILENT_URL": silent.url,
        # Either would make requests verify despite verify=False (see the notes).
        "REQUESTS_CA_BUNDLE": "",
        "CURL_CA_BUNDLE": "",
    }


def _get(server: Server, path: str) -> requests.Response:
    return requests.get(server.url + path, timeout=30)


def _assert_problem(answer: requests.Response, call: str) -> dict[str, Any]:
    status, kind, title = EXPECTED[call]
    assert answer.status_code == status, (call, answer.text)
    assert answer.headers["Content-Type"] == PROBLEM, (call, answer.headers)
    assert answer.headers["Cache-Control"] == "no-store"
    document = answer.json()
    assert document["type"] == kind and document["title"] == title, document
    assert document["status"] == status and document["detail"], document
    for secret in ("games", "SELECT", "127.0.0.1", "slow_marker", "Traceback"):
        assert secret not in answer.text, (call, answer.text)
    return dict(document)


def _assert_refused(
    server: Server, prefix: str, calls: list[str], bq: LocalBigQuery, https: AppServer
) -> None:
    connections = https.connections
    for call in calls:
        _assert_problem(_get(server, f"{prefix}/{call}"), call)
    assert https.connections == connections  # refused before anything was sent
    # The class-timeout cut cancelled the job server-side, as the guard does in enforce.
    cancelled = bq.requests.of("jobs.cancel")
    assert 1 <= len(cancelled) <= 2, cancelled  # the server may stop the default one first
    # The detail the client was not given is in the guards' log lines.
    log = server.log()
    assert f"{P}.nba.games" in log, log
    assert "ran past its read class timeout" in log, log


def test_flask_under_gunicorn(
    tmp_path: Path, env: dict[str, str], bq_server: LocalBigQuery, https: AppServer
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    with gunicorn(
        "tests.apps.refusals_flask:app",
        tmp_path,
        env={**env, **ENFORCE},
        worker_class="gthread",
        threads=4,
    ) as server:
        _assert_refused(server, "/call", list(EXPECTED), bq_server, https)
        # The app's own handlers (a blueprint's, for base classes) win.
        for call, name in (
            ("unfiltered", "UnpartitionedQueryError"),
            ("insecure", "InsecureTLSError"),
        ):
            answer = _get(server, f"/handled/{call}")
            assert (answer.status_code, answer.text) == (409, f"handled by the app: {name}")
        # Raised in an after_request hook, outside the view's error handlers.
        _assert_problem(_get(server, "/late/unfiltered"), "unfiltered")
        # An ordinary bug: Flask's usual 500 page, and its error log.
        answer = _get(server, "/call/boom")
        assert answer.status_code == 500 and answer.headers["Content-Type"].startswith("text/html")
        assert "an ordinary bug of the app" in server.log()


def test_starlette_under_uvicorn(
    tmp_path: Path, env: dict[str, str], bq_server: LocalBigQuery, https: AppServer
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    with uvicorn("tests.apps.refusals_starlette:app", tmp_path, env={**env, **ENFORCE}) as server:
        _assert_refused(
            server,
            "/call",
            ["unfiltered", "slow-query", "slow-query-default", "silent"],
            bq_server,
            https,
        )
        # The app's own handler for requests.exceptions.SSLError wins.
        answer = _get(server, "/call/insecure")
        assert (answer.status_code, answer.text) == (409, "handled by the app: InsecureTLSError")
        answer = _get(server, "/call/boom")
        assert (answer.status_code, answer.text) == (500, "Internal Server Error")


def test_bare_asgi_under_uvicorn(
    tmp_path: Path, env: dict[str, str], bq_server: LocalBigQuery, https: AppServer
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    with uvicorn(
        "tests.apps.refusals_starlette:bare_app", tmp_path, env={**env, **ENFORCE}
    ) as server:
        _assert_refused(server, "/call", list(EXPECTED), bq_server, https)
        answer = _get(server, "/call/boom")  # uvicorn's own 500
        assert (answer.status_code, answer.text) == (500, "Internal Server Error")


def test_observe_refuses_nothing(
    tmp_path: Path, env: dict[str, str], bq_server: LocalBigQuery, https: AppServer
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=2)  # past its 1 s class
    with gunicorn(
        "tests.apps.refusals_flask:app", tmp_path, env={**env, **OBSERVE}, worker_class="gthread"
    ) as server:
        connections = https.connections
        assert _get(server, "/call/unfiltered").json() == {"result": [[1]]}
        assert _get(server, "/call/slow-query").json() == {"result": [[1]]}
        assert _get(server, "/call/insecure").json() == {"result": "ok"}
        assert https.connections == connections + 1  # sent, unverified, as written
    assert bq_server.requests.of("jobs.cancel") == []


# --- the ASGI layer's edges, in process (a recorded ``send`` stands for the server) ------


def _run_asgi(
    app: Any, scope_type: str = "http"
) -> tuple[list[dict[str, Any]], BaseException | None]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    try:
        asyncio.run(RefusalASGIMiddleware(app)({"type": scope_type}, receive, send))
    except BaseException as error:
        return sent, error
    return sent, None


class _Refused(ValueError, BastionRefusal):
    problem_status = 503
    problem_type = "https://example.com/problems/test"
    problem_detail = "Refused for the test."


def test_asgi_refusal_before_the_response_is_answered() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise _Refused("SELECT secret FROM t")

    sent, error = _run_asgi(app)
    assert error is None
    assert sent[0] == {
        "type": "http.response.start",
        "status": 503,
        "headers": list(problem_for(_Refused).asgi_headers),
    }
    assert json.loads(sent[1]["body"]) == {
        "type": "https://example.com/problems/test",
        "title": "Service Unavailable",  # the status phrase when no title is set
        "status": 503,
        "detail": "Refused for the test.",
    }


def test_asgi_refusal_after_the_response_started_is_left_to_the_server() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise _Refused("late")

    sent, error = _run_asgi(app)
    assert isinstance(error, _Refused)
    assert [message["type"] for message in sent] == ["http.response.start"]


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
def test_asgi_other_exceptions_and_scopes_pass_through(scope_type: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise (_Refused("ws") if scope["type"] == "websocket" else KeyError("bug"))

    sent, error = _run_asgi(app, scope_type)
    assert sent == [] and isinstance(error, (_Refused if scope_type == "websocket" else KeyError))
