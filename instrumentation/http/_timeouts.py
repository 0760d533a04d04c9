"""Which timeout an outbound call gets: the caller's, a default, and never past the deadline.

``requests`` accepts a timeout as ``None`` (wait forever), a number (connect and read),
a ``(connect, read)`` tuple whose parts may be ``None``, or a urllib3
:class:`~urllib3.util.Timeout`. :func:`plan_timeout` keeps the caller's form, so the
adapter (``HTTPAdapter`` or a custom one) receives what it would have received, only
bounded:

* ``None`` alone is the forgotten timeout (the classic hung worker): it becomes
  ``(connect_default, read_default)``;
* a ``None`` inside a tuple or a Timeout object is a deliberate choice (a long poll, an
  endless feed): it gets no default, only the deadline cap;
* every part is capped at the seconds left before the request's deadline.

Forms ``requests`` itself rejects (booleans, negative or NaN numbers, tuples of the wrong
length, strings) are passed through untouched, so the caller gets requests' own error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from urllib3.util.timeout import Timeout

__all__ = ["TimeoutPlan", "UpstreamTimeouts", "plan_timeout"]


class TimeoutPlan(NamedTuple):
    """The timeout to hand to the adapter and what it means per socket operation."""

    timeout: object
    connect: float | None
    read: float | None
    defaulted: bool
    capped: bool


def _number(value: object) -> float | None:
    """``value`` as seconds if requests would accept it as a timeout number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = float(value)
    return seconds if seconds >= 0.0 and not math.isnan(seconds) else None


def _cap(value: float | None, remaining: float | None) -> float | None:
    if remaining is None:
        return value
    return remaining if value is None or value > remaining else value


def plan_timeout(
    given: object,
    connect_default: float,
    read_default: float,
    remaining: float | None,
) -> TimeoutPlan | None:
    """The bounded form of ``given``, or None when it is a form to leave to requests."""
    if given is None:  # the most common case: spelled out, no helper calls
        first, then = connect_default, read_default
        if remaining is not None:
            first = remaining if remaining < first else first
            then = remaining if remaining < then else then
        capped = first != connect_default or then != read_default
        return TimeoutPlan((first, then), first, then, True, capped)
    if isinstance(given, Timeout):
        return _plan_urllib3(given, remaining)
    if isinstance(given, tuple):
        if len(given) != 2:
            return None
        parts = [None if part is None else _number(part) for part in given]
        if any(part is None and raw is not None for part, raw in zip(parts, given, strict=True)):
            return None
        connect, read = (_cap(part, remaining) for part in parts)
        capped = (connect, read) != (parts[0], parts[1])
        return TimeoutPlan((connect, read) if capped else given, connect, read, False, capped)
    seconds = _number(given)
    if seconds is None:
        return None
    bounded = _cap(seconds, remaining)
    if bounded == seconds:
        return TimeoutPlan(given, seconds, seconds, False, False)
    return TimeoutPlan(bounded, bounded, bounded, False, True)


def _plan_urllib3(given: Timeout, remaining: float | None) -> TimeoutPlan | None:
    connect, read, total = (_seconds_of(v) for v in (given._connect, given._read, given.total))
    effective_connect = connect if total is None else _cap(connect, total)
    effective_read = read if total is None else _cap(read, total)
    if remaining is None:
        return TimeoutPlan(given, effective_connect, effective_read, False, False)
    capped_connect, capped_read = _cap(connect, remaining), _cap(read, remaining)
    capped_total = None if total is None else _cap(total, remaining)
    if (capped_connect, capped_read, capped_total) == (connect, read, total):
        return TimeoutPlan(given, effective_connect, effective_read, False, False)
    bounded = Timeout(connect=capped_connect, read=capped_read, total=capped_total)
    return TimeoutPlan(
        bounded, _cap(effective_connect, remaining), _cap(effective_read, remaining), False, True
    )


def _seconds_of(value: object) -> float | None:
    # Timeout.DEFAULT_TIMEOUT means "the socket module's default" (None unless the
    # process called socket.setdefaulttimeout).
    return _number(Timeout.resolve_default_timeout(value))  # type: ignore[arg-type]


class UpstreamTimeouts:
    """``BASTION_HTTP_UPSTREAM_TIMEOUTS``: the read timeout of a URL's upstream, if listed.

    Patterns are ``host``, ``host:port``, ``*.suffix`` or ``*.suffix:port`` (a wildcard
    matches subdomains only, not ``suffix`` itself, as ``BASTION_TLS_ALLOW_INSECURE_HOSTS``).
    The most specific wins: ``host:port``, then ``host``, then the longest wildcard suffix
    (with its port before without). The port compared is the URL's, or 80/443 by scheme.
    Everything is ordered once, here; a lookup is a URL split and a few dict probes.
    """

    def __init__(self, table: Mapping[str, float]) -> None:
        self._exact: dict[tuple[str, int | None], tuple[str, float]] = {}
        wildcards: list[tuple[str, int | None, str, float]] = []
        for raw_pattern, seconds in table.items():
            pattern = raw_pattern.lower()
            host, port = _split_pattern(pattern)
            if host.startswith("*."):
                wildcards.append((host[1:], port, pattern, float(seconds)))
            else:
                self._exact[(host.strip("[]"), port)] = (pattern, float(seconds))
        # Longest suffix first; at equal suffixes the one naming a port first.
        wildcards.sort(key=lambda w: (-len(w[0]), w[1] is None))
        self._wildcards = tuple(wildcards)

    def __bool__(self) -> bool:
        return bool(self._exact or self._wildcards)

    def read_for(self, url: str) -> tuple[str, float] | None:
        """``(pattern, seconds)`` for ``url``'s upstream, or None when none is listed."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError:  # a malformed port: requests will refuse the URL itself
            return None
        found = self._exact.get((host, port)) or self._exact.get((host, None))
        if found is not None:
            return found
        for suffix, wanted_port, pattern, seconds in self._wildcards:
            if host.endswith(suffix) and (wanted_port is None or wanted_port == port):
                return pattern, seconds
        return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_pattern(pattern: str) -> tuple[str, int | None]:
    """``(host, port)`` of a canonical pattern (IPv6 addresses are in brackets)."""
    host, colon, port = pattern.rpartition(":")
    if colon and port.isdigit() and (not host.startswith("[") or host.endswith("]")):
        return host, int(port)
    return pattern, None
