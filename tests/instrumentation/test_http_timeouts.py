"""Outbound HTTP guard: default timeouts, deadline caps and the total-time body cut.

Every request here goes over real sockets to servers on 127.0.0.1 (tests/apps/
http_servers.py). The wall-clock bounds are the ones the issue sets: a slow drip is cut
at the deadline +/- 100 ms; a silent server at the default read timeout.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import requests
import urllib3
import wrapt
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.util import Retry, Timeout

from bastion.instrumentation.http import DeadlinePassed, DeadlineTimeout, HttpInstrumentor
from bastion.instrumentation.http._timeouts import plan_timeout
from bastion.middleware import deadline
from bastion.middleware.deadline import DEADLINE_HEADER, DeadlineExceeded
from bastion.settings import Mode, Settings
from tests.apps.http_harness import RecordingAdapter, guarded, urlopen_timeouts
from tests.apps.http_servers import AppServer, DripServer, FullBacklogServer, SilentServer

ENFORCE = Settings.from_env({}, http=Mode.ENFORCE, tls=Mode.OFF)
OBSERVE = Settings.from_env({}, http=Mode.OBSERVE, tls=Mode.OFF)
SLACK = 0.1  # the issue's +/- 100 ms


@pytest.fixture(scope="module")
def app() -> Any:
    with AppServer() as server:
        yield server


def _elapsed(fn: Any) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        fn()
    except BaseException as error:
        return time.monotonic() - start, error
    return time.monotonic() - start, None


# --- plan_timeout: the forms requests accepts ---------------------------------------


@pytest.mark.parametrize(
    ("given", "remaining", "expected", "defaulted", "capped"),
    [
        (None, None, (5.0, 30.0), True, False),
        (None, 2.0, (2.0, 2.0), True, True),
        (None, 10.0, (5.0, 10.0), True, True),
        (3, None, 3, False, False),
        (2.5, 1.0, 1.0, False, True),
        (2.5, 9.0, 2.5, False, False),
        ((1, 2), 1.5, (1, 1.5), False, True),
        ((None, 2.0), 1.0, (1.0, 1.0), False, True),
        ((1.0, None), None, (1.0, None), False, False),
        ((1.0, None), 4.0, (1.0, 4.0), False, True),
    ],
)
def test_plan_keeps_the_callers_form_and_caps_it(
    given: object, remaining: float | None, expected: object, defaulted: bool, capped: bool
) -> None:
    plan = plan_timeout(given, 5.0, 30.0, remaining)
    assert plan is not None
    assert plan.timeout == expected
    assert type(plan.timeout) is type(expected)
    assert (plan.defaulted, plan.capped) == (defaulted, capped)


def test_plan_caps_urllib3_timeout_objects() -> None:
    given = Timeout(connect=2.0, read=20.0, total=30.0)
    plan = plan_timeout(given, 5.0, 30.0, 3.0)
    assert plan is not None and plan.capped
    assert isinstance(plan.timeout, Timeout)
    assert (plan.timeout.connect_timeout, plan.timeout.total) == (2.0, 3.0)
    assert (plan.connect, plan.read) == (2.0, 3.0)
    untouched = plan_timeout(given, 5.0, 30.0, None)
    assert untouched is not None and untouched.timeout is given and not untouched.capped
    default_parts = plan_timeout(Timeout(), 5.0, 30.0, 1.5)
    assert default_parts is not None
    assert (default_parts.connect, default_parts.read) == (1.5, 1.5)


@pytest.mark.parametrize("odd", [True, -1, float("nan"), "5", (1, 2, 3), (1, "x"), [1, 2]])
def test_plan_leaves_forms_requests_rejects_to_requests(odd: object) -> None:
    assert plan_timeout(odd, 5.0, 30.0, 1.0) is None


# --- real servers ---------------------------------------------------------------------


@pytest.mark.slow
def test_slow_drip_is_cut_at_the_deadline() -> None:
    with DripServer(interval=0.5) as drip, guarded(ENFORCE) as counters, deadline.scope(1.0):
        took, error = _elapsed(lambda: requests.get(drip.url, timeout=1.0))
    assert isinstance(error, DeadlineTimeout), error
    assert isinstance(error, requests.exceptions.Timeout)
    assert isinstance(error, DeadlineExceeded)
    assert error.phase == "body"
    assert 1.0 - SLACK <= took <= 1.0 + SLACK
    assert 0 < drip.bytes_sent < 5
    assert counters.value("bastion.http.client.deadline_cuts", bastion__http__phase="body") == 1


@pytest.mark.slow
def test_slow_drip_without_the_guard_runs_past_the_deadline() -> None:
    # The reason for the guard: requests' per-read timeout never fires on a drip.
    with DripServer(interval=0.2, length=8) as drip, deadline.scope(0.5):
        took, error = _elapsed(lambda: requests.get(drip.url, timeout=1.0))
    assert error is None
    assert took >= 1.5


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True])
def test_streamed_drip_is_cut_at_the_deadline(chunked: bool) -> None:
    with (
        DripServer(interval=0.5, chunked=chunked) as drip,
        guarded(ENFORCE),
        deadline.scope(1.0),
    ):
        start = time.monotonic()
        response = requests.get(drip.url, stream=True, timeout=5)
        received = bytearray()
        with pytest.raises(DeadlineTimeout) as caught:
            for chunk in response.iter_content(chunk_size=1):
                received += chunk
        took = time.monotonic() - start
    assert caught.value.phase == "body"
    assert 1.0 - SLACK <= took <= 1.0 + SLACK
    assert 0 < len(received) < 5


@pytest.mark.slow
def test_raw_reads_of_a_streamed_drip_are_cut_too() -> None:
    with DripServer(interval=0.5) as drip, guarded(ENFORCE), deadline.scope(1.0):
        start = time.monotonic()
        response = requests.get(drip.url, stream=True)
        with pytest.raises(DeadlineTimeout):
            response.raw.read(40)
        took = time.monotonic() - start
    assert 1.0 - SLACK <= took <= 1.0 + SLACK


@pytest.mark.slow
def test_dripped_status_line_and_headers_are_cut_at_the_deadline() -> None:
    with (
        DripServer(interval=0.2, drip_head=True) as drip,
        guarded(ENFORCE),
        deadline.scope(1.0),
    ):
        took, error = _elapsed(lambda: requests.get(drip.url, timeout=5))
    assert isinstance(error, DeadlineTimeout), error
    assert error.phase == "response"
    assert 1.0 - SLACK <= took <= 1.0 + SLACK


def test_the_header_bound_is_enforce_only_and_off_after_uninstrument() -> None:
    from urllib3.connection import HTTPConnection

    original = HTTPConnection.response_class
    with guarded(ENFORCE):
        assert HTTPConnection.response_class is not original
    assert HTTPConnection.response_class is original
    with guarded(OBSERVE):  # observe changes nothing, here either
        assert HTTPConnection.response_class is original


def test_urllib3_reads_are_replaced_while_instrumented_and_restored_after() -> None:
    from urllib3.response import HTTPResponse

    original = (HTTPResponse.read, HTTPResponse.read_chunked)
    for mode in (ENFORCE, OBSERVE):
        with guarded(mode):
            assert HTTPResponse.read is not original[0]
            assert HTTPResponse.read_chunked is not original[1]
            assert getattr(HTTPResponse.read, "__wrapped__", None) is original[0]
        assert (HTTPResponse.read, HTTPResponse.read_chunked) == original


def test_silent_server_is_cut_at_the_default_read_timeout() -> None:
    with SilentServer() as silent, guarded(ENFORCE, http_read_seconds=0.5):
        took, error = _elapsed(lambda: requests.get(silent.url))
    assert isinstance(error, requests.exceptions.ReadTimeout), error
    assert not isinstance(error, DeadlineTimeout)  # no deadline: the default did it
    assert 0.5 <= took <= 0.5 + SLACK


def test_silent_server_is_cut_at_the_deadline_when_that_comes_first() -> None:
    with SilentServer() as silent, guarded(ENFORCE), deadline.scope(0.6):
        took, error = _elapsed(lambda: requests.get(silent.url, timeout=10))
    assert isinstance(error, DeadlineTimeout), error
    assert error.phase == "response"
    assert 0.6 - SLACK <= took <= 0.6 + SLACK


def test_a_hanging_connect_is_cut_at_the_deadline() -> None:
    with FullBacklogServer() as unreachable, guarded(ENFORCE), deadline.scope(0.5):
        took, error = _elapsed(lambda: requests.get(unreachable.url, timeout=(10, 10)))
    assert isinstance(error, DeadlineTimeout), error
    assert isinstance(error.__cause__, requests.exceptions.ConnectTimeout)
    assert error.phase == "response"
    assert 0.5 - SLACK <= took <= 0.5 + SLACK


def test_nothing_is_sent_once_the_deadline_has_passed(app: AppServer) -> None:
    before = app.connections
    with (
        guarded(ENFORCE) as counters,
        deadline.scope(0),
        pytest.raises(DeadlinePassed) as caught,
    ):
        requests.get(f"{app.url}/ok", timeout=3)
    assert caught.value.phase == "before-send"
    # Not a requests exception: retry loops keyed on requests.Timeout must stop here.
    assert not isinstance(caught.value, requests.exceptions.RequestException)
    assert app.connections == before
    assert counters.value("bastion.http.client.deadline_cuts", bastion__mode="enforce") == 1


@pytest.mark.slow
def test_observe_changes_nothing_and_records_what_would_apply() -> None:
    with (
        DripServer(interval=0.25, length=4) as drip,
        guarded(OBSERVE) as counters,
        urlopen_timeouts() as seen,
        deadline.scope(0.5),
    ):
        response = requests.get(drip.url)  # no timeout, drip outlasts the deadline
    assert response.content == b"xxxx"
    assert seen[0].connect_timeout is None and seen[0].read_timeout is None  # as written
    assert (
        counters.value(
            "bastion.http.client.timeouts_applied",
            bastion__mode="observe",
            bastion__http__timeout_source="deadline",
        )
        == 1
    )
    assert (
        counters.value(
            "bastion.http.client.deadline_cuts",
            bastion__mode="observe",
            bastion__http__phase="body",
        )
        == 1
    )


def test_observe_records_a_late_response_without_changing_it() -> None:
    with (
        DripServer(interval=0.1, length=1, header_delay=0.6) as late,
        guarded(OBSERVE) as counters,
        deadline.scope(0.3),
    ):
        assert requests.get(late.url, timeout=5).content == b"x"
    assert (
        counters.value(
            "bastion.http.client.deadline_cuts",
            bastion__mode="observe",
            bastion__http__phase="response",
        )
        == 1
    )
    assert counters.value("bastion.http.client.deadline_cuts", bastion__http__phase="body") == 0


def test_default_timeout_is_applied_when_none_given(app: AppServer) -> None:
    with (
        guarded(ENFORCE, http_connect_seconds=2.0, http_read_seconds=7.0) as counters,
        urlopen_timeouts() as seen,
    ):
        assert requests.get(f"{app.url}/ok").text == "ok"
        assert requests.get(f"{app.url}/ok", timeout=(1.0, None)).text == "ok"
    assert (seen[0].connect_timeout, seen[0].read_timeout) == (2.0, 7.0)
    assert (seen[1].connect_timeout, seen[1].read_timeout) == (1.0, None)  # deliberate None
    assert counters.value("bastion.http.client.timeouts_applied") == 1


@pytest.mark.parametrize(
    "given",
    [None, 3, 2.5, (1, 2), (None, 2), (1, None), Timeout(connect=1, read=2), Timeout(total=3)],
    ids=repr,
)
def test_every_timeout_form_works_and_is_capped(app: AppServer, given: object) -> None:
    with guarded(ENFORCE), urlopen_timeouts() as seen, deadline.scope(0.8):
        response = requests.get(f"{app.url}/ok", timeout=given)
    assert response.text == "ok"
    sent = seen[0]
    assert 0 < sent.connect_timeout <= 0.8
    assert 0 < sent.read_timeout <= 0.8


@pytest.mark.parametrize("odd", [(1, 2, 3), "soon", -1, True])
def test_timeouts_requests_rejects_fail_exactly_as_before(app: AppServer, odd: object) -> None:
    def call() -> None:
        requests.get(f"{app.url}/ok", timeout=odd)

    _, unguarded = _elapsed(call)
    with guarded(ENFORCE), deadline.scope(5):
        _, guarded_error = _elapsed(call)
    assert unguarded is not None
    assert type(guarded_error) is type(unguarded)
    assert str(guarded_error) == str(unguarded)


def test_redirects_are_followed_and_every_hop_is_bounded(app: AppServer) -> None:
    with guarded(ENFORCE), urlopen_timeouts() as seen, deadline.scope(2.0):
        response = requests.get(f"{app.url}/redirect?to=/ok")
    assert response.text == "ok"
    assert [r.status_code for r in response.history] == [302]
    assert len(seen) == 2
    assert all(t.read_timeout <= 2.0 for t in seen)


@pytest.mark.slow
def test_a_redirect_to_a_slow_drip_is_cut_at_the_deadline(app: AppServer) -> None:
    with guarded(ENFORCE), deadline.scope(1.0):
        took, error = _elapsed(lambda: requests.get(f"{app.url}/drip-redirect", timeout=5))
    assert isinstance(error, DeadlineTimeout), error
    assert 1.0 - SLACK <= took <= 1.0 + SLACK


@pytest.mark.slow
def test_a_bounded_body_leaves_the_kept_alive_connection_as_it_was(app: AppServer) -> None:
    session = requests.Session()
    with guarded(ENFORCE):
        with deadline.scope(0.5):  # the body's reads lower the socket timeout to ~0.3 s
            assert session.get(f"{app.url}/drip?n=2&every=0.1").text == "xx"
        before = app.connections
        # Same pooled connection, no deadline: 0.6 s gaps must not trip the old timeout.
        assert session.get(f"{app.url}/drip?n=2&every=0.6", timeout=5).text == "xx"
    assert app.connections == before


def test_mounted_adapter_subclass_works_and_is_bounded(app: AppServer) -> None:
    adapter = RecordingAdapter(max_retries=Retry(total=2, backoff_factor=0))
    session = requests.Session()
    session.mount("http://", adapter)
    with guarded(ENFORCE), urlopen_timeouts() as seen, deadline.scope(1.5):
        assert session.get(f"{app.url}/ok").text == "ok"
    assert adapter.calls[0].get("timeout") is None  # what the session gave the adapter
    assert seen[0].read_timeout <= 1.5  # what reached urllib3


def test_non_http_adapter_is_left_alone() -> None:
    class EchoAdapter(BaseAdapter):
        def __init__(self) -> None:
            super().__init__()
            self.timeouts: list[object] = []

        def send(self, request: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            self.timeouts.append(kwargs.get("timeout"))
            response = requests.Response()
            response.status_code, response._content = 200, b"echo"
            response.request, response.url = request, request.url
            return response

        def close(self) -> None:
            pass

    adapter = EchoAdapter()
    session = requests.Session()
    session.mount("echo://", adapter)
    with guarded(ENFORCE), deadline.scope(1.0):
        assert session.get("echo://anything").text == "echo"
    assert adapter.timeouts == [None]


@pytest.mark.parametrize(("propagate", "in_scope"), [(True, True), (True, False), (False, True)])
def test_remaining_budget_is_propagated_when_enabled(
    app: AppServer, propagate: bool, in_scope: bool
) -> None:
    with guarded(ENFORCE, http_propagate_deadline=propagate):
        if in_scope:
            with deadline.scope(2.0):
                echoed = requests.get(f"{app.url}/headers", timeout=5).json()
        else:
            echoed = requests.get(f"{app.url}/headers", timeout=5).json()
    sent = echoed.get(DEADLINE_HEADER)
    if propagate and in_scope:
        assert sent is not None and 1000 < int(sent) <= 2000
    else:
        assert sent is None


def test_off_installs_nothing() -> None:
    with guarded(Settings.from_env({}, http=Mode.OFF, tls=Mode.OFF)):
        assert not isinstance(HTTPAdapter.__dict__["send"], wrapt.FunctionWrapper)
        assert not isinstance(urllib3.disable_warnings, wrapt.FunctionWrapper)


def test_instrument_is_idempotent_and_uninstrument_restores() -> None:
    original = HTTPAdapter.__dict__["send"]
    with guarded(ENFORCE):
        HttpInstrumentor().instrument(settings=ENFORCE, skip_dep_check=True)  # again: no-op
        wrapper = HTTPAdapter.__dict__["send"]
        assert isinstance(wrapper, wrapt.FunctionWrapper)
        assert wrapper.__wrapped__ is original
    assert HTTPAdapter.__dict__["send"] is original


def test_internal_error_is_logged_once_and_the_call_proceeds_as_written(
    app: AppServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("injected fault")

    with (
        guarded(ENFORCE),
        monkeypatch.context() as patch,
        urlopen_timeouts() as seen,
        deadline.scope(2.0),
        caplog.at_level(logging.ERROR, logger="bastion.instrumentation.http"),
    ):
        patch.setattr("bastion.instrumentation.http._guard.current", broken)
        for _ in range(3):
            assert requests.get(f"{app.url}/ok").text == "ok"
    assert [t.read_timeout for t in seen] == [None, None, None]  # exactly as the caller wrote
    faults = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(faults) == 1
    assert faults[0].exc_info is not None and "injected fault" in str(faults[0].exc_info[1])
