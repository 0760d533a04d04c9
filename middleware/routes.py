"""Per-route overrides shared by the guards, matched once per request by path.

A key is an exact path (``/healthz``) or a prefix ending in ``/`` (``/docs/``).
The longest matching prefix wins; an exact key beats every prefix. Matching is a
dict lookup plus a scan of the (few) prefixes, all sorted once at startup.

:class:`RoutePatterns` extends that form for settings written in the environment
(``BASTION_BQ_ROUTE_CLASSES``) with ``*`` (one path segment) and framework route
templates (``/games/<int:game_id>``); see its docstring for the order of matching.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

V = TypeVar("V")


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

    def match(self, path: str) -> tuple[str, Route] | None:
        """The key that matched ``path`` (exact first, then the longest prefix) and its
        route; the key names the route in per-route state and metric labels."""
        route = self._exact.get(path)
        if route is not None:
            return path, route
        for prefix, candidate in self._prefixes:
            if path.startswith(prefix):
                return prefix, candidate
        return None

    def items(self) -> list[tuple[str, Route]]:
        """Every key and route, so layers can compile per-route state at startup."""
        return [*self._exact.items(), *self._prefixes]

    def with_route(self, path: str, route: Route) -> RouteTable:
        """A new table with ``path`` set to ``route`` (this one is left as it is)."""
        return RouteTable({**self._given, path: route})

    @classmethod
    def of(cls, routes: RouteTable | Mapping[str, Route] | None) -> RouteTable:
        return routes if isinstance(routes, RouteTable) else cls(routes)


#: What a route pattern may be (the message of a malformed one).
PATTERN_FORMS = (
    "a path starting with / (exact: /health; prefix ending in /: /dashboards/; "
    "* for one path segment: /games/*/odds) or a Flask route template (/games/<int:id>)"
)
_TEMPLATE = re.compile(r"/(?:[^<>\s*,=]|<[^<>\s,/*]+>)*", re.ASCII)
_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()+:@/*]*", re.ASCII)


def pattern_problem(pattern: str) -> str:
    """Why ``pattern`` is no route pattern, or "" when it is one."""
    if not pattern.startswith("/"):
        return f"{pattern!r} does not start with '/'"
    if "<" in pattern or ">" in pattern:
        if "*" in pattern:
            return f"{pattern!r} mixes a route template with '*'"
        return "" if _TEMPLATE.fullmatch(pattern) else f"{pattern!r} is no route template"
    if not _PATH.fullmatch(pattern):
        return f"{pattern!r} has characters a URL path cannot match"
    if "**" in pattern:
        return f"{pattern!r}: '*' stands for one segment; a prefix ends in '/'"
    return ""


class RoutePatterns(Generic[V]):
    """Route pattern → value, compiled once; :meth:`match` costs dict look-ups, at most
    one precompiled regex and a scan of the (few) prefixes.

    A pattern is one of, and the first kind that matches wins:

    1. a route template (has ``<``): equal to the framework's template of the request
       (Flask's ``request.url_rule.rule``), converters included: ``/games/<int:id>``;
    2. an exact path: ``/health``;
    3. a path with ``*`` standing for one non-empty segment or part of one
       (``/dashboards/*``, ``/games/*/odds``, ``/export-*``); the first listed wins;
    4. a prefix ending in ``/``: ``/dashboards/`` (every path below it); the longest wins.
    """

    __slots__ = ("_exact", "_glob", "_glob_patterns", "_prefixes", "_templates")

    def __init__(self, patterns: Mapping[str, V] | None = None) -> None:
        patterns = dict(patterns or {})
        for pattern in patterns:
            problem = pattern_problem(pattern)
            if problem:
                raise ValueError(f"route pattern {problem}; allowed: {PATTERN_FORMS}")
        self._templates = {p: v for p, v in patterns.items() if "<" in p}
        paths = {p: v for p, v in patterns.items() if "<" not in p}
        globs = [(p, v) for p, v in paths.items() if "*" in p]
        self._exact = {p: v for p, v in paths.items() if "*" not in p and not _is_prefix(p)}
        self._prefixes = sorted(
            ((p, v) for p, v in paths.items() if "*" not in p and _is_prefix(p)),
            key=lambda item: -len(item[0]),
        )
        self._glob_patterns = globs
        # One alternation, one group per pattern: re tries them in order, so the
        # first listed pattern that matches is the group that took part.
        self._glob = (
            re.compile("|".join(f"({_glob_regex(p)})" for p, _ in globs)) if globs else None
        )

    def __bool__(self) -> bool:
        return bool(self._templates or self._exact or self._glob_patterns or self._prefixes)

    @property
    def needs_path(self) -> bool:
        """Whether any pattern matches paths (so the caller must look the path up)."""
        return bool(self._exact or self._glob_patterns or self._prefixes)

    def match(self, path: str, template: str = "") -> tuple[str, V] | None:
        """(pattern, value) of the pattern that wins for this request, or None."""
        if template:
            found = self._templates.get(template)
            if found is not None:
                return template, found
        value = self._exact.get(path)
        if value is not None:
            return path, value
        if self._glob is not None:
            hit = self._glob.fullmatch(path)
            # The alternatives hold no groups of their own: lastindex is the one taken.
            if hit is not None and hit.lastindex is not None:
                return self._glob_patterns[hit.lastindex - 1]
        for prefix, candidate in self._prefixes:
            if path.startswith(prefix):
                return prefix, candidate
        return None


def _is_prefix(pattern: str) -> bool:
    return pattern.endswith("/") and pattern != "/"


def _glob_regex(pattern: str) -> str:
    return "[^/]+".join(re.escape(part) for part in pattern.split("*"))
