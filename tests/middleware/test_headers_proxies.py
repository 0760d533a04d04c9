"""The one trusted-proxy rule (:mod:`bastion.middleware.proxies`) and the three guards using it:
HSTS, the CSP intake's rate-limit key, the deadline's Envoy header.

The hop counting is checked against Werkzeug's own ``ProxyFix`` (``x_for=n``,
``x_proto=n`` with ``n`` the number of trusted hops), and WSGI against ASGI with the
same headers split into repeated lines. IPv4-mapped peers are what a dual-stack
(``[::]``) listener puts in ``REMOTE_ADDR`` / ``scope["client"]``; they are written
into hand-built scopes here, because binding ``[::]`` would leave loopback."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from werkzeug.middleware.proxy_fix import ProxyFix

from bastion.middleware.csp_reports import CSPReportASGIMiddleware, CSPReportMiddleware
from bastion.middleware.deadline.inbound import BudgetPolicy
from bastion.middleware.headers import SecurityHeadersASGIMiddleware
from bastion.middleware.proxies import Hop, TrustedProxies, ip_of, join_asgi_header
from bastion.settings import Settings
from tests.middleware.test_headers import settings as header_settings

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:1::/48"))
PROXIES = TrustedProxies(TRUSTED)


def wsgi_hop(peer: str, **headers: str) -> Hop:
    environ = {"REMOTE_ADDR": peer, **{f"HTTP_{k.upper()}": v for k, v in headers.items()}}
    return PROXIES.wsgi(environ)


# --- the peer --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.0.0.1", True),
        ("::ffff:10.0.0.1", True),  # a dual-stack listener's IPv4 client
        ("::ffff:a00:1", True),  # the same address, hex-written
        ("2001:db8:1::7", True),
        ("11.0.0.1", False),
        ("::ffff:11.0.0.1", False),
        ("[10.0.0.1]", True),
        ("not an ip", False),
        ("", False),
        ("9" * 500, False),
    ],
)
def test_a_peer_is_trusted_by_its_address_ipv4_mapped_unwrapped(peer: str, trusted: bool) -> None:
    assert PROXIES.trusts(peer) is trusted


def test_nothing_is_trusted_without_networks() -> None:
    assert not TrustedProxies(()).trusts("10.0.0.1")
    assert TrustedProxies(()).wsgi({"REMOTE_ADDR": "::ffff:1.2.3.4"}) == Hop("1.2.3.4", None, False)


def test_forwarded_addresses_take_ports_and_brackets_off() -> None:
    assert str(ip_of("1.2.3.4:8080")) == "1.2.3.4"
    assert str(ip_of("[2001:db8::1]:443")) == "2001:db8::1"
    assert ip_of("unknown") is None and ip_of("_hidden") is None


# --- the rule --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "for_", "proto", "client", "scheme"),
    [
        # untrusted peer: nothing forwarded is believed
        ("203.0.113.9", "1.2.3.4", "https", "203.0.113.9", None),
        # one trusted proxy: the last value of each
        ("10.0.0.1", "1.2.3.4", "https", "1.2.3.4", "https"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4", "https, http", "1.2.3.4", "http"),  # client forged
        # two trusted proxies (the right-most address is the first proxy): second from right
        ("10.0.0.2", "1.2.3.4, 10.0.0.1", "https, http", "1.2.3.4", "https"),
        # the second proxy overwrote X-Forwarded-Proto: too few values, nothing believed
        ("10.0.0.2", "1.2.3.4, 10.0.0.1", "http", "1.2.3.4", None),
        # malformed hop: the walk stops, nothing to its left believed
        ("10.0.0.1", "1.2.3.4, garbage", "https", "10.0.0.1", "https"),
        ("::ffff:10.0.0.1", "::ffff:1.2.3.4", "HTTPS", "1.2.3.4", "https"),
    ],
)
def test_the_hop_the_trusted_proxy_wrote(
    peer: str, for_: str, proto: str, client: str, scheme: str | None
) -> None:
    assert wsgi_hop(peer, x_forwarded_for=for_, x_forwarded_proto=proto) == Hop(
        client, scheme, PROXIES.trusts(peer)
    )


def test_forwarded_rfc7239_when_the_proxies_write_it() -> None:
    proxies = TrustedProxies(TRUSTED, "forwarded")
    environ = {
        "REMOTE_ADDR": "10.0.0.2",
        "HTTP_FORWARDED": 'for=6.6.6.6;proto=https, for="[2001:db8::7]:4711";proto=https, '
        "for=10.0.0.1;proto=http",
        # the other family is ignored: these proxies never write it
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_FOR": "9.9.9.9",
    }
    assert proxies.wsgi(environ) == Hop("2001:db8::7", "https", True)
    assert proxies.wsgi({**environ, "HTTP_FORWARDED": 'for="unterminated'}) == Hop(
        "10.0.0.2", None, True
    )
    assert PROXIES.wsgi({**environ, "HTTP_FORWARDED": "for=1.1.1.1"}).client == "9.9.9.9"


def _proxyfix(environ: dict[str, Any], x_for: int, x_proto: int) -> tuple[str, str]:
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        return []

    ProxyFix(app, x_for=x_for, x_proto=x_proto)(dict(environ), lambda *a: None)
    return seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]


ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
proxy = st.integers(1, 250).map(lambda i: f"10.0.0.{i}")


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    clients=st.lists(ipv4.filter(lambda a: not a.startswith("10.")), min_size=0, max_size=3),
    proxies=st.lists(proxy, min_size=0, max_size=3),
    protos=st.lists(st.sampled_from(["http", "https", "HTTPS", "wss"]), min_size=0, max_size=6),
    split=st.lists(st.integers(1, 4), min_size=2, max_size=2),
)
def test_wsgi_asgi_and_proxyfix_agree(
    clients: list[str], proxies: list[str], protos: list[str], split: list[int]
) -> None:
    """A chain: untrusted clients (possibly forged), then trusted proxies, then the peer.
    ProxyFix configured with the number of trusted hops, WSGI with comma-joined values
    and ASGI with the same values spread over repeated lines all give one answer."""
    peer = "10.0.0.254"
    addresses = clients + proxies
    environ: dict[str, Any] = {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http"}
    if addresses:
        environ["HTTP_X_FORWARDED_FOR"] = ", ".join(addresses)
    if protos:
        environ["HTTP_X_FORWARDED_PROTO"] = ",".join(protos)
    hop = PROXIES.wsgi(environ)

    lines: list[tuple[bytes, bytes]] = []
    for name, values, size in (
        (b"x-forwarded-for", addresses, split[0]),
        (b"x-forwarded-proto", protos, split[1]),
    ):
        for i in range(0, len(values), size):
            lines.append((name, ", ".join(values[i : i + size]).encode()))
    scope = {"type": "http", "client": ("::ffff:" + peer, 1234), "headers": lines}
    assert PROXIES.asgi(scope) == hop

    hops = 1 + len(proxies)  # the peer and every trusted proxy before it
    # When every forwarded address is a trusted proxy, the left-most is the client
    # (ProxyFix, told one hop fewer, says the same; told ``hops``, it gives up).
    for_hops = hops if clients or not proxies else len(proxies)
    fixed_addr, fixed_scheme = _proxyfix(environ, for_hops, hops)
    assert hop.client == fixed_addr
    assert hop.scheme == (fixed_scheme.lower() if len(protos) >= hops else None)


def test_asgi_repeated_lines_are_joined_in_order() -> None:
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"other", b"x"), (b"x-forwarded-for", b"2.2.2.2")]
    assert join_asgi_header(headers, b"x-forwarded-for") == "1.1.1.1,2.2.2.2"
    assert join_asgi_header(headers, b"absent") is None


# --- the guards using it ---------------------------------------------------------------
async def _drive(app: Any, client: tuple[str, int], headers: list[tuple[bytes, bytes]]) -> Any:
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "headers": headers,
        "client": client,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return dict(sent[0]["headers"])


async def _plain(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(
    ("lines", "hsts"),
    [
        # HAProxy's `option forwardfor`-style append: the client's line first, the proxy's last
        ([b"https", b"http"], False),
        ([b"http", b"https"], True),
        ([b"https"], True),
    ],
)
def test_asgi_hsts_reads_the_proxys_line_of_repeated_x_forwarded_proto(
    lines: list[bytes], hsts: bool
) -> None:
    app = SecurityHeadersASGIMiddleware.from_settings(
        _plain, header_settings(trusted_proxies=TRUSTED)
    )
    headers = [(b"x-forwarded-proto", line) for line in lines]
    got = asyncio.run(_drive(app, ("10.0.0.1", 5000), headers))
    assert (b"strict-transport-security" in got) is hsts


def test_asgi_hsts_from_a_trusted_proxy_on_a_dual_stack_socket() -> None:
    app = SecurityHeadersASGIMiddleware.from_settings(
        _plain, header_settings(trusted_proxies=TRUSTED)
    )
    got = asyncio.run(_drive(app, ("::ffff:10.0.0.1", 5000), [(b"x-forwarded-proto", b"https")]))
    assert b"strict-transport-security" in got


REPORT = json.dumps(
    {"csp-report": {"document-uri": "https://a.example/", "violated-directive": "img-src"}}
)


def _asgi_reports(app: Any, client: str, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/csp",
        "headers": [(b"content-type", b"application/csp-report"), *headers],
        "client": (client, 40000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": REPORT.encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


def test_ipv4_clients_of_a_dual_stack_listener_keep_their_own_rate_limit_buckets() -> None:
    app = CSPReportASGIMiddleware.from_settings(
        _plain, Settings(csp_report_path="/csp", csp_report_rate_per_minute=2)
    )
    a = [_asgi_reports(app, "::ffff:198.51.100.7", []) for _ in range(3)]
    b = [_asgi_reports(app, "::ffff:198.51.100.8", []) for _ in range(3)]
    assert a == [204, 204, 429] and b == [204, 204, 429]


def test_a_client_cannot_pick_its_rate_limit_key_with_a_first_x_forwarded_for_line() -> None:
    """The proxy appends its own line (HAProxy ``option forwardfor``); the client's forged
    first line changes every time. Only the proxy's line counts: one bucket."""
    settings = Settings(
        csp_report_path="/csp", csp_report_rate_per_minute=10, trusted_proxies=TRUSTED
    )
    app = CSPReportASGIMiddleware.from_settings(_plain, settings)
    statuses = [
        _asgi_reports(
            app,
            "10.0.0.1",
            [(b"x-forwarded-for", f"192.0.2.{i}".encode()), (b"x-forwarded-for", b"198.51.100.9")],
        )
        for i in range(30)
    ]
    assert statuses.count(204) == 10 and statuses.count(429) == 20


def test_wsgi_and_asgi_intakes_key_the_same_client() -> None:
    settings = Settings(csp_report_path="/csp", trusted_proxies=TRUSTED)
    wsgi = CSPReportMiddleware.from_settings(lambda e, s: [], settings)
    asgi = CSPReportASGIMiddleware.from_settings(_plain, settings)
    environ = {"REMOTE_ADDR": "::ffff:10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 2001:db8:9::5"}
    scope = {
        "client": ("10.0.0.1", 1),
        "headers": [(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-for", b"2001:db8:9::5")],
    }
    assert wsgi.intake.client_wsgi(environ) == asgi.intake.client_asgi(scope) == "2001:db8:9::/64"


def test_envoy_deadline_header_from_a_trusted_proxy_on_a_dual_stack_socket() -> None:
    policy = BudgetPolicy.from_settings(Settings(trusted_proxies=TRUSTED, deadline_seconds=10.0))
    header = [(b"x-envoy-expected-rq-timeout-ms", b"1500")]
    scope = {"path": "/", "headers": header, "client": ("::ffff:10.0.0.5", 1)}
    assert policy.for_asgi(scope) == (1.5, "x-envoy-expected-rq-timeout-ms")
    environ = {
        "PATH_INFO": "/",
        "REMOTE_ADDR": "::ffff:10.0.0.5",
        "HTTP_X_ENVOY_EXPECTED_RQ_TIMEOUT_MS": "1500",
        "wsgi.input": io.BytesIO(),
    }
    assert policy.for_wsgi(environ) == (1.5, "x-envoy-expected-rq-timeout-ms")


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    family=st.sampled_from(["x-forwarded", "forwarded"]),
    peer=st.one_of(st.none(), st.sampled_from(["10.0.0.1", "::ffff:10.0.0.1"]), st.text()),
    lines=st.lists(
        st.tuples(
            st.sampled_from([b"x-forwarded-for", b"x-forwarded-proto", b"forwarded"]),
            st.binary(max_size=60),
        ),
        max_size=6,
    ),
)
def test_hostile_forwarded_values_never_raise_and_agree_across_wsgi_and_asgi(
    family: str, peer: str | None, lines: list[tuple[bytes, bytes]]
) -> None:
    proxies = TrustedProxies(TRUSTED, family)
    scope = {"client": (peer, 1) if peer is not None else None, "headers": lines}
    environ: dict[str, Any] = {} if peer is None else {"REMOTE_ADDR": peer}
    for name, value in lines:  # as a WSGI server joins repeated lines
        key = "HTTP_" + name.decode().upper().replace("-", "_")
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    hop = proxies.asgi(scope)
    assert hop == proxies.wsgi(environ)
    assert hop.client is None or ip_of(hop.client) is not None
