"""The request budget: default, per-route overrides, inbound headers, bad input."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.middleware.deadline.inbound import (
    BudgetPolicy,
    Rejected,
    parse_bastion_timeout,
    parse_grpc_timeout,
)
from bastion.middleware.routes import Route, RouteTable
from bastion.settings import Settings

SETTINGS = Settings(deadline_seconds=10.0, deadline_max_seconds=60.0)


@pytest.mark.parametrize(
    "value, seconds",
    [("1S", 1.0), ("250m", 0.25), ("2M", 120.0), ("1H", 3600.0), ("5000u", 0.005), ("7n", 7e-9)],
)
def test_grpc_timeout_units(value: str, seconds: float) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value, reason",
    [
        ("", "malformed"),
        ("S", "malformed"),
        ("10", "malformed"),  # no unit
        ("1s", "malformed"),  # units are case-sensitive
        ("0S", "zero"),
        ("-1S", "negative"),
        ("123456789S", "overflow"),  # at most 8 digits
        ("1.5S", "malformed"),
        ("NaNS", "malformed"),
        ("1S,2S", "repeated"),
    ],
)
def test_grpc_timeout_rejects(value: str, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_grpc_timeout(value)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "value, reason",
    [
        ("", "empty"),
        ("0", "zero"),
        ("-5", "negative"),
        ("NaN", "malformed"),
        ("inf", "malformed"),
        ("1e3", "malformed"),
        ("1.5", "malformed"),
        ("12345678901", "overflow"),
        ("9" * 400, "overflow"),
        ("100, 200", "repeated"),
        ("\u0661\u0662", "malformed"),  # non-ASCII digits
    ],
)
def test_bastion_header_rejects(value: str, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_bastion_timeout(value)
    assert caught.value.reason == reason


@given(st.text(max_size=40))
def test_parsers_never_raise_anything_else(value: str) -> None:
    for parse in (parse_bastion_timeout, parse_grpc_timeout):
        try:
            seconds = parse(value)
        except Rejected:
            continue
        assert 0 < seconds < float("inf")


def wsgi(headers: dict[str, str], path: str = "/", peer: str = "203.0.113.9") -> dict[str, str]:
    environ = {"PATH_INFO": path, "REMOTE_ADDR": peer}
    environ.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    return environ


def asgi(
    headers: list[tuple[str, str]], path: str = "/", peer: str = "203.0.113.9"
) -> dict[str, object]:
    return {
        "type": "http",
        "path": path,
        "client": (peer, 1234),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


def budgets(policy: BudgetPolicy, headers: dict[str, str], **kw: str) -> set[object]:
    """The budget through both doors; they must agree."""
    return {
        policy.for_wsgi(wsgi(headers, **kw)),
        policy.for_asgi(asgi(list(headers.items()), **kw)),
    }


def test_default_budget_and_headers_only_shorten() -> None:
    policy = BudgetPolicy.from_settings(SETTINGS)
    assert budgets(policy, {}) == {(10.0, "default")}
    assert budgets(policy, {"X-Bastion-Timeout-Ms": "2500"}) == {(2.5, "x-bastion-timeout-ms")}
    assert budgets(policy, {"grpc-timeout": "3S"}) == {(3.0, "grpc-timeout")}
    # Both: the earliest wins.
    assert budgets(policy, {"X-Bastion-Timeout-Ms": "2500", "grpc-timeout": "1S"}) == {
        (1.0, "grpc-timeout")
    }
    # Longer than the local budget: no effect.
    assert budgets(policy, {"X-Bastion-Timeout-Ms": "20000"}) == {(10.0, "default")}


def test_route_override_replaces_the_default_within_the_cap() -> None:
    routes = {
        "/export/": Route(deadline_seconds=45.0),
        "/huge": Route(deadline_seconds=999.0),
        "/quick": Route(deadline_seconds=1.0),
        "/stream": Route(exempt_deadline=True),
        "/docs/": Route(exempt_headers=True),  # not about deadlines: ignored here
    }
    policy = BudgetPolicy.from_settings(SETTINGS, routes)
    assert budgets(policy, {}, path="/export/csv") == {(45.0, "route")}
    assert budgets(policy, {}, path="/huge") == {(60.0, "route")}  # capped
    assert budgets(policy, {}, path="/quick") == {(1.0, "route")}
    assert budgets(policy, {}, path="/stream") == {None}
    assert budgets(policy, {}, path="/docs/x") == {(10.0, "default")}
    # An inbound header still only shortens a route's budget.
    assert budgets(policy, {"X-Bastion-Timeout-Ms": "50000"}, path="/export/a") == {(45.0, "route")}
    assert budgets(policy, {"X-Bastion-Timeout-Ms": "5000"}, path="/export/a") == {
        (5.0, "x-bastion-timeout-ms")
    }
    assert policy.largest_budget() == 60.0
    assert BudgetPolicy.from_settings(SETTINGS, RouteTable(routes)).largest_budget() == 60.0


def test_envoy_header_only_from_trusted_proxies() -> None:
    untrusted = BudgetPolicy.from_settings(SETTINGS)
    header = {"x-envoy-expected-rq-timeout-ms": "1500"}
    assert budgets(untrusted, header, peer="10.0.0.5") == {(10.0, "default")}
    trusted = BudgetPolicy.from_settings(
        SETTINGS.replace(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    )
    assert budgets(trusted, header, peer="10.0.0.5") == {(1.5, "x-envoy-expected-rq-timeout-ms")}
    assert budgets(trusted, header, peer="192.0.2.1") == {(10.0, "default")}
    # X-Forwarded-For is never the peer.
    assert budgets(trusted, {**header, "X-Forwarded-For": "10.0.0.5"}, peer="192.0.2.1") == {
        (10.0, "default")
    }


BAD = ["-5", "0", "NaN", "huge", "1e9", "99999999999", "", "1,2", "\x00", "\u0661"]


@pytest.mark.parametrize("value", BAD)
def test_malformed_values_are_ignored_and_recorded(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    policy = BudgetPolicy.from_settings(SETTINGS)
    with caplog.at_level(logging.DEBUG, logger="bastion.deadline"):
        assert budgets(policy, {"X-Bastion-Timeout-Ms": value}) == {(10.0, "default")}
        assert budgets(policy, {"grpc-timeout": value + "S"}) == {(10.0, "default")}
    records = [r for r in caplog.records if "inbound deadline header" in r.getMessage()]
    assert len(records) == 4  # each header, through each door


def test_repeated_asgi_header_is_rejected_not_merged() -> None:
    policy = BudgetPolicy.from_settings(SETTINGS)
    scope = asgi([("X-Bastion-Timeout-Ms", "100"), ("X-Bastion-Timeout-Ms", "9000")])
    assert policy.for_asgi(scope) == (10.0, "default")


def test_huge_values_are_capped_and_recorded(caplog: pytest.LogCaptureFixture) -> None:
    policy = BudgetPolicy.from_settings(
        Settings(deadline_seconds=20.0, deadline_max_seconds=30.0),
        {"/long": Route(deadline_seconds=300.0)},
    )
    with caplog.at_level(logging.DEBUG, logger="bastion.deadline"):
        assert budgets(policy, {"grpc-timeout": "99999999H"}) == {(20.0, "default")}
        assert budgets(policy, {"grpc-timeout": "99999999H"}, path="/long") == {(30.0, "route")}
    assert any("capped" in r.getMessage() for r in caplog.records)


def test_route_label_is_bounded() -> None:
    policy = BudgetPolicy.from_settings(SETTINGS, {"/reports/": Route(deadline_seconds=5.0)})
    assert policy.route_label("/reports/2024/q1") == "/reports/"
    assert policy.route_label("/players/123/stats") == "/players"
    labels = {policy.route_label(f"/id{i}/x") for i in range(500)}
    assert len(labels) == 64  # 64 first segments in all (with /players), then "other"
    assert "other" in labels
