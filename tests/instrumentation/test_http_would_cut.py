"""Observe shows the cuts enforce will make at the timeouts Bastion gives outbound calls.

A real slow upstream on 127.0.0.1 (tests/apps/http_servers.py ``/slow?seconds=``) answers
after a chosen wait. The read timeouts here are a few tenths of a second and the waits are
at least twice or at most half of them, so which calls are cut does not depend on timing
jitter; no test asserts a duration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from bastion.instrumentation.http import DeadlineTimeout
from bastion.instrumentation.http._timeouts import UpstreamTimeouts
from bastion.middleware import deadline
from bastion.settings import Mode, Settings, SettingsError
from tests.apps.http_harness import guarded
from tests.apps.http_servers import AppServer, FullBacklogServer

FAST, SLOW = 0.0, 0.8  # seconds the upstream waits before answering
READ = 0.3  # the default read timeout in these tests
CUTS = "bastion.http.client.timeout_cuts"


@pytest.fixture(scope="module")
def upstream() -> Iterator[AppServer]:
    with AppServer() as server:
        yield server


def _settings(mode: Mode, **env: str) -> Settings:
    return Settings.from_env(
        {"BASTION_HTTP_READ_SECONDS": str(READ), **env}, http=mode, tls=Mode.OFF
    )


def _plain_get(url: str) -> requests.Response:
    return requests.get(url)


def _session_with_retries(url: str) -> requests.Response:
    # An HTTPAdapter subclass instance mounted for retries, as services do.
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=Retry(total=0, read=False)))
        return session.get(url)


CLIENTS = [_plain_get, _session_with_retries]


def _outcomes(get: Callable[[str], requests.Response], base: str, waits: list[float]) -> list[str]:
    """Per call: the body when it completed, or the exception's class name."""
    found = []
    for wait in waits:
        try:
            found.append(get(f"{base}/slow?seconds={wait}").text)
        except requests.RequestException as error:
            found.append(type(error).__name__)
    return found


@pytest.mark.parametrize("get", CLIENTS, ids=lambda f: f.__name__)
def test_observe_records_exactly_the_calls_enforce_cuts(
    upstream: AppServer, get: Callable[[str], requests.Response]
) -> None:
    waits = [FAST, SLOW, FAST, SLOW, SLOW]
    with guarded(_settings(Mode.OBSERVE)) as observed:
        observe_outcomes = _outcomes(get, upstream.url, waits)
    with guarded(_settings(Mode.ENFORCE)) as enforced:
        enforce_outcomes = _outcomes(get, upstream.url, waits)

    # observe changes nothing: every call completes with the upstream's answer.
    assert observe_outcomes == ["slow"] * len(waits)
    cut = [outcome != "slow" for outcome in enforce_outcomes]
    assert cut == [wait == SLOW for wait in waits]
    assert set(enforce_outcomes) - {"slow"} in ({"ReadTimeout"}, {"ConnectionError"})
    # The same calls, counted in each mode, against the default read timeout.
    assert (
        observed.value(CUTS, bastion__mode="observe", bastion__http__timeout_source="default") == 3
    )
    assert (
        enforced.value(CUTS, bastion__mode="enforce", bastion__http__timeout_source="default") == 3
    )
    assert observed.value(CUTS, bastion__http__phase="response") == 3


def test_observe_logs_once_per_call_site_naming_the_site_and_the_timeout(
    upstream: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        guarded(_settings(Mode.OBSERVE)),
        caplog.at_level(logging.WARNING, logger="bastion.instrumentation.http"),
    ):
        for _ in range(2):
            requests.get(f"{upstream.url}/slow?seconds={SLOW}")  # site A, twice
        requests.get(f"{upstream.url}/slow?seconds={SLOW}")  # site B
        requests.get(f"{upstream.url}/slow?seconds={FAST}")  # within budget: no line
    lines = [r.getMessage() for r in caplog.records if "would cut" in r.getMessage()]
    assert len(lines) == 2, lines
    assert all(__file__ in line for line in lines)
    assert len({line.split(" at ")[1].split(" ")[0] for line in lines}) == 2  # two sites
    assert "BASTION_HTTP_READ_SECONDS" in lines[0] and f"{READ:g}s" in lines[0]


def test_the_would_be_cut_is_an_event_on_the_requests_span(upstream: AppServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = RequestsInstrumentor()
    spans.instrument(tracer_provider=provider)
    try:
        with guarded(_settings(Mode.OBSERVE)):
            assert requests.get(f"{upstream.url}/slow?seconds={SLOW}").text == "slow"
            assert requests.get(f"{upstream.url}/slow?seconds={FAST}").text == "slow"
    finally:
        spans.uninstrument()
    slow, fast = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    (event,) = [e for e in slow.events if e.name == "bastion.http.would_timeout_cut"]
    attributes = event.attributes or {}
    assert attributes["bastion.http.timeout_source"] == "default"
    assert attributes["bastion.http.would_timeout_read"] == READ
    assert attributes["bastion.http.waited_seconds"] > READ  # type: ignore[operator]
    assert (slow.attributes or {})["bastion.http.would_timeout_cut"] is True
    assert not [e for e in fast.events if "timeout_cut" in e.name]


def test_a_longer_per_upstream_timeout_lets_the_call_through_in_both_modes(
    upstream: AppServer,
) -> None:
    longer = {"BASTION_HTTP_UPSTREAM_TIMEOUTS": f"127.0.0.1:{upstream.port}=3"}
    with guarded(_settings(Mode.OBSERVE, **longer)) as observed:
        assert _outcomes(_plain_get, upstream.url, [SLOW]) == ["slow"]
    with guarded(_settings(Mode.ENFORCE, **longer)) as enforced:
        assert _outcomes(_plain_get, upstream.url, [SLOW]) == ["slow"]
    assert observed.value(CUTS) == enforced.value(CUTS) == 0
    assert (
        enforced.value(
            "bastion.http.client.timeouts_applied", bastion__http__timeout_source="upstream"
        )
        == 1
    )


def test_a_shorter_per_upstream_timeout_cuts_in_enforce_and_is_recorded_in_observe(
    upstream: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        "BASTION_HTTP_READ_SECONDS": "30",
        "BASTION_HTTP_UPSTREAM_TIMEOUTS": f"127.0.0.2=9,127.0.0.1={READ}",
    }
    settings = {m: Settings.from_env(env, http=m, tls=Mode.OFF) for m in Mode if m.active}
    with (
        guarded(settings[Mode.OBSERVE]) as observed,
        caplog.at_level(logging.WARNING, logger="bastion.instrumentation.http"),
    ):
        assert _outcomes(_plain_get, upstream.url, [SLOW, FAST]) == ["slow", "slow"]
    with guarded(settings[Mode.ENFORCE]) as enforced:
        outcomes = _outcomes(_plain_get, upstream.url, [SLOW, FAST])
    assert outcomes[0] in ("ReadTimeout", "ConnectionError") and outcomes[1] == "slow"
    for counters, mode in ((observed, "observe"), (enforced, "enforce")):
        assert (
            counters.value(CUTS, bastion__mode=mode, bastion__http__timeout_source="upstream") == 1
        )
    (line,) = [r.getMessage() for r in caplog.records if "would cut" in r.getMessage()]
    assert "BASTION_HTTP_UPSTREAM_TIMEOUTS 127.0.0.1" in line


def test_the_callers_own_timeout_wins_over_the_upstream_entry(upstream: AppServer) -> None:
    env = {"BASTION_HTTP_UPSTREAM_TIMEOUTS": f"127.0.0.1={READ}"}
    for mode in (Mode.OBSERVE, Mode.ENFORCE):
        with guarded(_settings(mode, **env)) as counters:
            response = requests.get(f"{upstream.url}/slow?seconds={SLOW}", timeout=5)
        assert response.text == "slow"
        assert counters.value(CUTS) == 0


def test_a_call_the_deadline_cuts_first_is_a_deadline_cut_only(
    upstream: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Budget 0.5 s < read 30 s: enforce would cut at the deadline, not the timeout.
    with (
        guarded(Settings.from_env({}, http=Mode.OBSERVE, tls=Mode.OFF)) as counters,
        caplog.at_level(logging.WARNING, logger="bastion.instrumentation.http"),
        deadline.scope(0.5),
    ):
        assert requests.get(f"{upstream.url}/slow?seconds={SLOW}").text == "slow"
    assert counters.value(CUTS) == 0
    assert counters.value("bastion.http.client.deadline_cuts", bastion__mode="observe") == 1
    (line,) = [r.getMessage() for r in caplog.records if "deadline" in r.getMessage()]
    assert __file__ in line and "would cut" in line


def test_inside_a_longer_deadline_the_timeout_cut_is_recorded_not_a_deadline_cut(
    upstream: AppServer,
) -> None:
    with guarded(_settings(Mode.OBSERVE)) as counters, deadline.scope(0.6):
        # The answer comes after both the read timeout (0.3) and the deadline (0.6):
        # enforce's read timeout fires first, so only that is recorded.
        assert requests.get(f"{upstream.url}/slow?seconds={SLOW}").text == "slow"
    assert counters.value(CUTS, bastion__mode="observe") == 1
    assert counters.value("bastion.http.client.deadline_cuts") == 0
    with (
        guarded(_settings(Mode.ENFORCE)) as enforced,
        deadline.scope(0.6),
        pytest.raises(requests.exceptions.ReadTimeout) as raised,
    ):
        requests.get(f"{upstream.url}/slow?seconds={SLOW}")
    assert not isinstance(raised.value, DeadlineTimeout)  # the read timeout, as recorded
    assert enforced.value(CUTS, bastion__mode="enforce") == 1
    assert enforced.value("bastion.http.client.deadline_cuts") == 0


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("worker.internal", "'worker.internal'"),
        ("http://worker.internal=90", "'http://worker.internal=90'"),
        ("worker.internal=soon", "'soon' is no timeout"),
        ("worker.internal=0", "'0' is no timeout"),
        ("worker.internal:70000=5", "port 70000"),
        ("*.10.0.0.1=5", "is no host to match"),
        ("Worker.Internal=5,worker.internal=6", "given twice"),
    ],
)
def test_malformed_upstream_timeouts_fail_at_startup_naming_the_variable(
    value: str, why: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"BASTION_HTTP_UPSTREAM_TIMEOUTS": value})
    message = str(raised.value)
    assert "BASTION_HTTP_UPSTREAM_TIMEOUTS" in message and why in message
    assert "host[:port]=SECONDS" in message


def test_code_values_get_the_same_check() -> None:
    with pytest.raises(SettingsError, match="BASTION_HTTP_UPSTREAM_TIMEOUTS"):
        Settings.from_env({}, http_upstream_timeouts={"http://x": 5.0})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://worker.internal:8080/run", "worker.internal:8080"),
        ("http://worker.internal/run", "worker.internal"),
        ("https://a.b.example.com/", "*.b.example.com:443"),
        ("http://a.b.example.com/", "*.b.example.com"),
        ("http://a.example.com/", "*.example.com"),
        ("http://example.com/", None),
        ("http://[::1]:9000/", "[::1]:9000"),
        ("http://elsewhere/", None),
    ],
)
def test_the_most_specific_upstream_entry_wins(url: str, expected: str | None) -> None:
    table = Settings.from_env(
        {
            "BASTION_HTTP_UPSTREAM_TIMEOUTS": "*.example.com=1,*.b.example.com=2,"
            "*.b.example.com:443=3,worker.internal=4,worker.internal:8080=5,[::1]:9000=6"
        }
    ).http_upstream_timeouts
    found: Any = UpstreamTimeouts(table).read_for(url)
    assert (found[0] if found else None) == expected


def test_enforce_counts_a_connect_cut_at_the_default_connect_timeout() -> None:
    # Observe cannot show this one before it happens: without a timeout the connect hangs
    # as long as the kernel retries (README: a slow connect is not compared in observe).
    settings = _settings(Mode.ENFORCE, BASTION_HTTP_CONNECT_SECONDS="0.2")
    with (
        FullBacklogServer() as unreachable,
        guarded(settings) as counters,
        pytest.raises(requests.exceptions.ConnectTimeout),
    ):
        requests.get(unreachable.url)
    assert counters.value(CUTS, bastion__mode="enforce", bastion__http__phase="connect") == 1
