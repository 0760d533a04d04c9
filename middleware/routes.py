"""Per-route overrides shared by the guards, matched once per request by path.

A key is an exact path (``/healthz``) or a prefix ending in ``/`` (``/docs/``).
The longest matching prefix wins; an exact key beats every prefix. Matching is a
dict lookup plus a scan of the (few) prefixes, all sorted once at startup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Route:
    """What one route changes about the guards.

    ``exempt_headers``: no security headers (health checks, docs pages).
    ``headers``: per-route header values; ``None`` removes a header Bastion would send.
    ``deadline_seconds``: this route's budget (still capped by the configured maximum).
    ``exempt_deadline``: no deadline (long-polling, streaming exports).
    """

    exempt_headers: bool = False
    headers: Mapping[str, str | None] = field(default_factory=dict)
    deadline_seconds: float | None = None
    exempt_deadline: bool = False


class RouteTable:
    """Path → :class:`Route`, compiled once."""

    __slots__ = ("_exact", "_given", "_prefixes")

    def __init__(self, routes: Mapping[str, Route] | None = None) -> None:
        routes = dict(routes or {})
        self._given = routes
        for path in routes:
            if not path.startswith("/"):
                raise ValueError(f"route {path!r} must start with '/'")
        self._exact = {p: r for p, r in routes.items() if not p.endswith("/") or p == "/"}
        self._prefixes = sorted(
            ((p, r) for p, r in routes.items() if p.endswith("/") and p != "/"),
            key=lambda item: -len(item[0]),
        )

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def match(self, path: str) -> Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for prefix, candidate in self._prefixes:
            if path.startswith(prefix):
                return candidate
        return None

    def values(self) -> list[Route]:
        """Every route, so layers can compile per-route state at startup."""
        return [*self._exact.values(), *(route for _, route in self._prefixes)]

    def with_route(self, path: str, route: Route) -> RouteTable:
        """A new table with ``path`` set to ``route`` (this one is left as it is)."""
        return RouteTable({**self._given, path: route})

    @classmethod
    def of(cls, routes: RouteTable | Mapping[str, Route] | None) -> RouteTable:
        return routes if isinstance(routes, RouteTable) else cls(routes)
