"""Who sent this request, and over which scheme: the one trusted-proxy rule every
Bastion guard uses (HSTS, the CSP intake's rate-limit key, the deadline's Envoy
header).

The TCP peer (WSGI ``REMOTE_ADDR``, ASGI ``scope["client"][0]``) is a *trusted proxy*
when it lies in one of ``BASTION_TRUSTED_PROXIES``. An IPv4-mapped IPv6 peer
(``::ffff:10.0.0.1``, what a dual-stack ``[::]`` listener reports for IPv4 clients)
is judged, and reported, as its IPv4 address.

Forwarded values are believed only from a trusted peer, and only in the header family
``BASTION_PROXY_HEADERS`` names (``x-forwarded``: ``X-Forwarded-For`` and
``X-Forwarded-Proto``; ``forwarded``: RFC 7239 ``Forwarded``); the other family is
ignored, because a proxy that does not write it passes on whatever the client sent.

The rule, one for every header:

1. Repeated header lines are joined with commas in the order received (as WSGI
   servers do), so two lines and one comma-joined line mean the same.
2. Hops are counted as Werkzeug's ``ProxyFix`` counts them with ``x_for=n``: the
   trusted peer is hop 1; reading the client addresses (``X-Forwarded-For`` entries or
   ``Forwarded`` ``for=``) from the right, each one that is itself a trusted proxy adds
   a hop. The walk stops at the first address that is not trusted (or at the left end).
3. The ``n``-th value from the right is the one the last trusted proxy wrote: it is
   the client address, and the ``n``-th ``X-Forwarded-Proto`` value (or the ``proto=``
   of the ``n``-th ``Forwarded`` element) is the scheme. A header with fewer than ``n``
   values says nothing (ProxyFix ignores it too). A value that is not an IP address
   ends the walk there: the address before it is the client.
4. From an untrusted peer every forwarded header is ignored: the client is the peer
   and the scheme is the connection's.

Malformed values never raise; they only make the header say less.

Cloud Run (``BASTION_TRUSTED_PROXIES=cloudrun``, see :data:`PROXY_PRESETS`): Google's
front end (GFE) terminates TLS, redirects plain http to https on the service URLs, and
reaches the container over plain HTTP/1.1 from a link-local address; it appends the
client's address to ``X-Forwarded-For`` and sets ``X-Forwarded-Proto``. The preset
trusts the link-local range ``169.254.0.0/16`` with the ``x-forwarded`` family.
Threat model: the container port is reachable only through the front end (sidecars
connect from loopback, which the preset does not trust), so the only writer of a
believed value is the GFE, or a client whose value the GFE passed on. Such a client
can forge only its own response: ``X-Forwarded-Proto: https`` over plain http earns
a ``Strict-Transport-Security`` header that browsers ignore there (RFC 6797 section
8.1: HSTS received over insecure transport is ignored) and a ``Reporting-Endpoints``
that Chromium ignores on http; ``http`` over HTTPS drops HSTS from the forger's own
answer; an earlier ``X-Forwarded-For`` entry is left of the GFE's and never read; the
Envoy deadline header can only shorten the forger's own budget. Behind an external
load balancer in front of Cloud Run, which appends its own address after the
client's, add that address (``cloudrun,203.0.113.10``) so the client is read past it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from bastion.middleware import _flags
from bastion.middleware._flags import FlagError
from bastion.middleware._settings_group import SettingsGroup, flag

__all__ = [
    "PROXY_HEADER_FAMILIES",
    "PROXY_PRESETS",
    "Hop",
    "IPNetwork",
    "ProxySettings",
    "TrustedProxies",
    "ip_of",
    "join_asgi_header",
    "normalised_address",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Values of ``BASTION_PROXY_HEADERS``.
PROXY_HEADER_FAMILIES: Final = ("x-forwarded", "forwarded")

#: Named entries of ``BASTION_TRUSTED_PROXIES``, each standing for the networks a
#: platform's front end connects from. ``cloudrun``: Cloud Run's front end, which
#: reaches the container from a link-local address (see the module docstring).
PROXY_PRESETS: Final[Mapping[str, tuple[IPNetwork, ...]]] = {
    "cloudrun": (ipaddress.ip_network("169.254.0.0/16"),),
}

_MAPPED: Final = ipaddress.ip_network("::ffff:0:0/96")


def parse_networks(
    name: str, raw: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """IP addresses or CIDR networks, exactly as meant: no host bits set (``10.0.0.1/8``
    is refused, not widened), no IPv4-mapped IPv6 ranges (peers are judged as IPv4).
    A named front end (``cloudrun``, :data:`PROXY_PRESETS`) stands
    for its networks."""
    allowed = (
        "a comma list of IP addresses or CIDR networks without host bits set, or of "
        f"the named front ends {', '.join(PROXY_PRESETS)}"
    )
    found: list[IPNetwork] = []
    for item in _flags.comma_list(name, raw):
        preset = PROXY_PRESETS.get(item.lower())
        if preset is not None:
            found.extend(preset)
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise FlagError(name, raw, allowed, f"{item!r} is not an address or network") from None
        if "/" in item and network.network_address != ipaddress.ip_interface(item).ip:
            raise FlagError(
                name,
                raw,
                allowed,
                f"{item!r} has host bits set: write {network} (the whole network) or "
                f"{item.partition('/')[0]} (one address)",
            )
        if network.version == 6 and network.subnet_of(_MAPPED):  # type: ignore[arg-type]
            raise FlagError(
                name, raw, allowed, f"{item!r} is IPv4-mapped: write the IPv4 address or network"
            )
        found.append(network)
    return tuple(found)


@dataclass(frozen=True)
class ProxySettings(SettingsGroup):
    """Which peers are the service's own proxies, and which headers they write."""

    title = "Trusted proxies"

    trusted_proxies: tuple[IPNetwork, ...] = flag(
        "BASTION_TRUSTED_PROXIES",
        parse_networks,
        (),
        "IPs/CIDRs of the proxies whose forwarded headers (and Envoy deadline header) are "
        "believed; `cloudrun` stands for Cloud Run's front end (169.254.0.0/16); see "
        "`bastion.middleware.proxies`.",
        recheck=True,
    )
    proxy_headers: str = flag(
        "BASTION_PROXY_HEADERS",
        _flags.choice(*PROXY_HEADER_FAMILIES),
        "x-forwarded",
        "Which headers the trusted proxies write: `x-forwarded` (X-Forwarded-For/-Proto) "
        "or `forwarded` (RFC 7239); the other family is ignored.",
    )


# An X-Forwarded-For list longer than this is cut to its right-most entries: nobody
# has that many proxies, and the walk must stay cheap on hostile input.
_MAX_HOPS: Final = 32
_MAX_ADDRESS: Final = 64
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# One Forwarded pair, its separator after it: name=token / name="quoted string".
_FORWARDED_PAIR: Final = re.compile(
    rf'[ \t]*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*(;|,|\Z)', re.ASCII
)


class Hop(NamedTuple):
    """What the rule says about one request. ``client``: the client's address (the
    peer's when nothing is believed; ``None`` without a peer). ``scheme``: the
    forwarded scheme a trusted proxy wrote (lower case), ``None`` if none is believed.
    ``trusted``: the peer is a trusted proxy."""

    client: str | None
    scheme: str | None
    trusted: bool


def ip_of(text: str | None) -> IPAddress | None:
    """An address from a peer or forwarded value: ``1.2.3.4``, ``1.2.3.4:80``,
    ``[2001:db8::1]:443``, ``2001:db8::1``; IPv4-mapped IPv6 unwrapped. ``None`` if it
    is none of those."""
    if not text or len(text) > _MAX_ADDRESS:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normalised_address(text: str | None) -> str | None:
    """``ip_of`` as text, or ``None``."""
    address = ip_of(text)
    return None if address is None else str(address)


def join_asgi_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """Every line of a request header, joined with ``,`` as WSGI servers join them
    (ASGI names are lower-case bytes); ``None`` if absent."""
    found: list[bytes] | None = None
    for key, value in headers:
        if key == name:
            if found is None:
                found = [bytes(value)]
            else:
                found.append(bytes(value))
    return None if found is None else b",".join(found).decode("latin-1")


class TrustedProxies:
    """The trusted-proxy rule (see the module docstring), compiled once.

    ``networks``: the trusted networks (``Settings.trusted_proxies``); ``headers``:
    ``x-forwarded`` or ``forwarded`` (``Settings.proxy_headers``). Verdicts on peer
    addresses are memoised in a bounded table (a pure function of the address).
    """

    __slots__ = ("_forwarded", "_networks", "_verdicts")
    _MAX_PEERS: Final = 1024

    def __init__(self, networks: Iterable[IPNetwork], headers: str = "x-forwarded") -> None:
        if headers not in PROXY_HEADER_FAMILIES:
            raise ValueError(f"headers must be one of {PROXY_HEADER_FAMILIES}, not {headers!r}")
        self._networks = tuple(networks)
        self._forwarded = headers == "forwarded"
        self._verdicts: dict[str, bool] = {}

    @classmethod
    def from_settings(cls, settings: ProxySettings) -> TrustedProxies:
        """From :class:`ProxySettings` (``BASTION_TRUSTED_PROXIES``,
        ``BASTION_PROXY_HEADERS``)."""
        return cls(settings.trusted_proxies, settings.proxy_headers)

    def __bool__(self) -> bool:
        return bool(self._networks)

    # --- the peer ------------------------------------------------------------------
    def trusts(self, peer: object) -> bool:
        """The peer address (text) lies in a trusted network (IPv4-mapped unwrapped)."""
        if not self._networks or not isinstance(peer, str):
            return False
        verdict = self._verdicts.get(peer)
        if verdict is None:
            address = ip_of(peer)
            verdict = address is not None and self._contains(address)
            if len(self._verdicts) >= self._MAX_PEERS:
                self._verdicts.clear()
            self._verdicts[peer] = verdict
        return verdict

    def _contains(self, address: IPAddress) -> bool:
        return any(address in network for network in self._networks)

    # --- one request -----------------------------------------------------------------
    def wsgi(self, environ: Mapping[str, Any]) -> Hop:
        """The rule applied to a WSGI environ (the server has joined repeated lines)."""
        peer = environ.get("REMOTE_ADDR")
        if not self.trusts(peer):
            return Hop(normalised_address(peer), None, False)
        if self._forwarded:
            return self._from_forwarded(peer, environ.get("HTTP_FORWARDED"))
        return self._from_x_forwarded(
            peer, environ.get("HTTP_X_FORWARDED_FOR"), environ.get("HTTP_X_FORWARDED_PROTO")
        )

    def asgi(self, scope: Mapping[str, Any]) -> Hop:
        """The rule applied to an ASGI scope (repeated lines joined first)."""
        client = scope.get("client")
        peer = client[0] if isinstance(client, (tuple, list)) and client else None
        if not self.trusts(peer):
            return Hop(normalised_address(peer), None, False)
        headers = scope.get("headers") or ()
        if self._forwarded:
            return self._from_forwarded(peer, join_asgi_header(headers, b"forwarded"))
        forwarded_for: list[bytes] = []
        forwarded_proto: list[bytes] = []
        for name, value in headers:
            if name == b"x-forwarded-for":
                forwarded_for.append(bytes(value))
            elif name == b"x-forwarded-proto":
                forwarded_proto.append(bytes(value))
        return self._from_x_forwarded(
            peer,
            b",".join(forwarded_for).decode("latin-1") if forwarded_for else None,
            b",".join(forwarded_proto).decode("latin-1") if forwarded_proto else None,
        )

    def resolve(
        self,
        peer: str | None,
        *,
        x_forwarded_for: str | None = None,
        x_forwarded_proto: str | None = None,
        forwarded: str | None = None,
    ) -> Hop:
        """The rule on plain values (each header's lines already joined with commas)."""
        if not self.trusts(peer):
            return Hop(normalised_address(peer), None, False)
        if self._forwarded:
            return self._from_forwarded(peer, forwarded)
        return self._from_x_forwarded(peer, x_forwarded_for, x_forwarded_proto)

    # --- internals -------------------------------------------------------------------
    def _from_x_forwarded(self, peer: Any, for_: str | None, proto: str | None) -> Hop:
        addresses = _right_most(for_.split(",")) if for_ else []
        hops, client = self._walk(peer, addresses)
        scheme = None
        if proto:
            values = proto.split(",")
            if len(values) >= hops:
                scheme = values[-hops].strip().lower() or None
        return Hop(client, scheme, True)

    def _from_forwarded(self, peer: Any, value: str | None) -> Hop:
        elements = _forwarded_elements(value) if value else []
        addresses = [element.get("for", "") for element in _right_most(elements)]
        hops, client = self._walk(peer, addresses)
        scheme = None
        if len(elements) >= hops:
            proto = elements[-hops].get("proto")
            scheme = proto.lower() if proto else None
        return Hop(client, scheme, True)

    def _walk(self, peer: Any, addresses: list[str]) -> tuple[int, str | None]:
        """(hops, client): the trusted peer is hop 1; each forwarded address read from
        the right that is a trusted proxy adds one."""
        hops = 1
        client = normalised_address(peer)
        for text in reversed(addresses):
            address = ip_of(text)
            if address is None:
                break  # malformed: nothing to its left is believed
            client = str(address)
            if not self._contains(address):
                break
            hops += 1
        return hops, client


def _right_most(values: list[Any]) -> list[Any]:
    return values[-_MAX_HOPS:]


def _forwarded_elements(value: str) -> list[dict[str, str]]:
    """RFC 7239 elements, each a dict of lower-case parameter names to unquoted values
    (the first of a repeated name). A malformed header yields no element at all."""
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    position = 0
    while position < len(value):
        match = _FORWARDED_PAIR.match(value, position)
        if match is None:
            return []
        name, raw, separator = match.groups()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        current.setdefault(name.lower(), raw)
        position = match.end()
        if separator != ";":
            elements.append(current)
            current = {}
    if current:  # a trailing ';'
        elements.append(current)
    return elements
