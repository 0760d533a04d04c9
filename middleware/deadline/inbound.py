"""How long a request may take: the configured budget, per-route overrides and the
deadline the caller announced in its headers.

Threat model. An inbound deadline header is written by whoever sent the request, so
it is only ever allowed to *shorten* the local budget, never to lengthen it: the
worst a client can do is time out its own request. Headers read:

``X-Bastion-Timeout-Ms`` (:data:`~bastion.middleware.deadline.DEADLINE_HEADER`)
    Relative milliseconds, ASCII digits only (1 to 10 of them). Sent by Bastion's
    outbound HTTP guard, so a chain of Bastion services shares one budget.
``grpc-timeout``
    The gRPC wire format: 1 to 8 digits and a unit, ``H`` ``M`` ``S`` ``m`` ``u`` ``n``.
``x-envoy-expected-rq-timeout-ms``
    Envoy's budget for the upstream. Believed only when the TCP peer (``REMOTE_ADDR``
    or the ASGI ``client``, never ``X-Forwarded-For``) is in ``BASTION_TRUSTED_PROXIES``,
    because at the edge anyone can send it.

A value that is negative, zero, NaN, non-numeric, too long (overflowing) or repeated
is ignored; one beyond ``BASTION_DEADLINE_MAX_SECONDS`` is capped. Either way it is
recorded (a debug log on ``bastion.deadline`` and the counter
``bastion.deadline.inbound_rejected`` by ``bastion.reason``), and never raises.

The budget of a request::

    local  = route.deadline_seconds if the route sets one, else BASTION_DEADLINE_SECONDS
    budget = min(local, every valid inbound header), capped by BASTION_DEADLINE_MAX_SECONDS

A per-route override *replaces* the default (a report export may need 120 s while the
default is 25 s) and is still capped by the maximum; ``Route(exempt_deadline=True)``
gives the route no deadline at all. Route keys are matched against the request path
(``PATH_INFO`` / ``scope["path"]``), not a framework's route template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Final

from opentelemetry import metrics

from bastion.middleware.proxies import TrustedProxies
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import MiddlewareSettings

__all__ = ["BudgetPolicy", "parse_bastion_timeout", "parse_grpc_timeout"]

logger = logging.getLogger("bastion.deadline")

_meter = metrics.get_meter("bastion")
_rejected = _meter.create_counter(
    "bastion.deadline.inbound_rejected",
    description="Inbound deadline headers ignored (malformed, untrusted, repeated) or capped.",
)

_MS_DIGITS: Final = re.compile(r"[0-9]{1,10}")
_GRPC: Final = re.compile(r"([0-9]{1,8})([HMSmun])")
_GRPC_UNIT_SECONDS: Final = {
    "H": 3600.0,
    "M": 60.0,
    "S": 1.0,
    "m": 1e-3,
    "u": 1e-6,
    "n": 1e-9,
}

BASTION_HEADER: Final = "x-bastion-timeout-ms"
GRPC_HEADER: Final = "grpc-timeout"
ENVOY_HEADER: Final = "x-envoy-expected-rq-timeout-ms"
#: The inbound deadline headers as ASGI spells them (lower-case bytes).
ASGI_HEADER_NAMES: Final = frozenset(
    n.encode() for n in (BASTION_HEADER, GRPC_HEADER, ENVOY_HEADER)
)
#: Labels for ``http.route`` on unmatched paths: first path segments, up to this many.
_MAX_ROUTE_LABELS: Final = 64


class Rejected(ValueError):
    """An inbound value that cannot be used; ``reason`` is the counter attribute."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _why_not_digits(value: str) -> str:
    text = value.strip()
    if not text:
        return "empty"
    if text.startswith("-"):
        return "negative"
    if "," in text:
        return "repeated"
    if text.isascii() and text.isdigit():
        return "overflow"
    return "malformed"


def parse_bastion_timeout(value: str) -> float:
    """``X-Bastion-Timeout-Ms`` (and Envoy's header): relative milliseconds → seconds."""
    if not _MS_DIGITS.fullmatch(value):
        raise Rejected(_why_not_digits(value))
    ms = int(value)
    if ms == 0:
        raise Rejected("zero")
    return ms / 1000.0


def parse_grpc_timeout(value: str) -> float:
    """``grpc-timeout``: ``TimeoutValue TimeoutUnit`` (at most 8 digits) → seconds."""
    match = _GRPC.fullmatch(value)
    if match is None:
        if value[-1:] not in _GRPC_UNIT_SECONDS:  # no unit: malformed, unless plainly worse
            reason = _why_not_digits(value)
            raise Rejected(reason if reason in ("negative", "repeated") else "malformed")
        reason = _why_not_digits(value[:-1])
        raise Rejected("malformed" if reason == "empty" else reason)
    amount = int(match.group(1))
    if amount == 0:
        raise Rejected("zero")
    return amount * _GRPC_UNIT_SECONDS[match.group(2)]


_PARSERS: Final = {
    BASTION_HEADER: parse_bastion_timeout,
    GRPC_HEADER: parse_grpc_timeout,
    ENVOY_HEADER: parse_bastion_timeout,
}


def _record(header: str, reason: str, value: str) -> None:
    _rejected.add(1, {"bastion.reason": reason})
    logger.debug("inbound deadline header %s=%.64r %s", header, value, reason)


class BudgetPolicy:
    """Everything about a request's budget that can be decided at startup.

    ``for_wsgi(environ)`` / ``for_asgi(scope)`` return ``(seconds, source)`` or
    ``None`` for an exempt route. ``source`` names what set the budget: ``default``,
    ``route``, or the header that shortened it.
    """

    __slots__ = (
        "_cap",
        "_default",
        "_labels",
        "_route_budgets",
        "_routes",
        "_trusted",
    )

    def __init__(
        self,
        seconds: float,
        max_seconds: float,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        self._cap = max_seconds
        self._default = min(seconds, self._cap)
        self._trusted = trusted_proxies if trusted_proxies is not None else TrustedProxies(())
        relevant = {
            key: route
            for key, route in _route_items(routes)
            if route.exempt_deadline or route.deadline_seconds is not None
        }
        self._routes = RouteTable(relevant) if relevant else None
        self._route_budgets = [self._default] + [
            min(route.deadline_seconds, self._cap)
            for route in relevant.values()
            if route.deadline_seconds is not None and not route.exempt_deadline
        ]
        self._labels: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls,
        settings: MiddlewareSettings,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> BudgetPolicy:
        """The policy ``BASTION_DEADLINE_SECONDS``, ``_MAX_SECONDS`` and the trusted
        proxies ask for."""
        return cls(
            settings.deadline_seconds,
            settings.deadline_max_seconds,
            routes=routes,
            trusted_proxies=TrustedProxies.from_settings(settings),
        )

    @property
    def default_budget(self) -> float:
        return self._default

    @property
    def has_routes(self) -> bool:
        return self._routes is not None

    def largest_budget(self) -> float:
        """The longest budget any request can get (for ordering server timeouts)."""
        return max(self._route_budgets, default=self._default)

    # --- per request ---------------------------------------------------------------
    def local(self, path: str) -> tuple[float, str] | None:
        """The budget before inbound headers: the route's, else the default."""
        if self._routes is not None:
            found = self._routes.match(path)
            if found is not None:
                route = found[1]
                if route.exempt_deadline:
                    return None
                if route.deadline_seconds is not None:
                    return min(route.deadline_seconds, self._cap), "route"
        return self._default, "default"

    def for_wsgi(self, environ: Mapping[str, object]) -> tuple[float, str] | None:
        local = self.local(str(environ.get("PATH_INFO", "")))
        if local is None:
            return None
        budget, source = local
        value = environ.get("HTTP_X_BASTION_TIMEOUT_MS")
        if value is not None:
            budget, source = self._shorten(budget, source, BASTION_HEADER, str(value))
        value = environ.get("HTTP_GRPC_TIMEOUT")
        if value is not None:
            budget, source = self._shorten(budget, source, GRPC_HEADER, str(value))
        value = environ.get("HTTP_X_ENVOY_EXPECTED_RQ_TIMEOUT_MS")
        if value is not None:
            if self._is_trusted(environ.get("REMOTE_ADDR")):
                budget, source = self._shorten(budget, source, ENVOY_HEADER, str(value))
            else:
                _record(ENVOY_HEADER, "untrusted", str(value))
        return budget, source

    def for_asgi(self, scope: Mapping[str, object]) -> tuple[float, str] | None:
        local = self.local(str(scope.get("path", "")))
        if local is None:
            return None
        budget, source = local
        found: dict[str, str] | None = None
        for name, raw in scope.get("headers") or ():  # type: ignore[attr-defined]
            if name in ASGI_HEADER_NAMES:
                key = name.decode("latin-1")
                value = raw.decode("latin-1")
                if found is None:
                    found = {key: value}
                elif key in found:
                    found[key] += "," + value  # repeated: rejected below, like WSGI does
                else:
                    found[key] = value
        if found is None:
            return budget, source
        for header, value in found.items():
            if header == ENVOY_HEADER:
                client = scope.get("client")
                peer = client[0] if isinstance(client, (tuple, list)) and client else None
                if not self._is_trusted(peer):
                    _record(ENVOY_HEADER, "untrusted", value)
                    continue
            budget, source = self._shorten(budget, source, header, value)
        return budget, source

    def route_label(self, path: str) -> str:
        """A bounded ``http.route`` value: the matched route key, else ``/first-segment``
        (at most 64 distinct ones, then ``other``), so paths with ids in them cannot
        blow up metric cardinality."""
        if self._routes is not None:
            found = self._routes.match(path)
            if found is not None:
                return found[0]
        segment = "/" + path.lstrip("/").split("/", 1)[0]
        if segment in self._labels:
            return segment
        if len(self._labels) < _MAX_ROUTE_LABELS:
            self._labels[segment] = segment
            return segment
        return "other"

    # --- internals -----------------------------------------------------------------
    def _shorten(self, budget: float, source: str, header: str, value: str) -> tuple[float, str]:
        try:
            seconds = _PARSERS[header](value.strip(" \t"))
        except Rejected as rejected:
            _record(header, rejected.reason, value)
            return budget, source
        if seconds > self._cap:
            _record(header, "capped", value)
            seconds = self._cap
        return (seconds, header) if seconds < budget else (budget, source)

    def _is_trusted(self, peer: object) -> bool:
        return self._trusted.trusts(peer)  # the one rule: bastion.middleware.proxies


def _route_items(
    routes: RouteTable | Mapping[str, Route] | None,
) -> Iterable[tuple[str, Route]]:
    return RouteTable.of(routes).items()
