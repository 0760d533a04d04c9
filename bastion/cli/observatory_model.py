"""What a scan observed, and what grading it produced: the data the Observatory
grader (:mod:`bastion.cli.observatory`) reads and returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from bastion.cli import _html, _node

__all__ = ["HTML_TYPES", "Hop", "Observation", "Report", "Response", "TestResult"]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


@dataclass(frozen=True)
class Response:
    """One HTTP answer as observed: headers keep every line, in order."""

    url: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    verified: bool = True  # the TLS chain was verified (always True for http://)

    @classmethod
    def of(cls, url: str, headers: Iterable[tuple[str, str]], **kw: Any) -> Response:
        return cls(url, headers=tuple((str(k), str(v)) for k, v in headers), **kw)

    def get_all(self, name: str) -> list[str]:
        """Every line of a header, as received."""
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    @cached_property
    def node_headers(self) -> _node.NodeHeaders:
        """The headers as the Observatory sees them (Node's joining, axios' cleaning)."""
        return _node.node_headers(self.headers)

    def all(self, name: str) -> list[str]:
        """The Observatory's ``getHttpHeaders``: the joined value in a list (every
        ``Set-Cookie`` line for that header), empty when absent."""
        value = self.node_headers.get(name.lower())
        if value is None:
            return []
        return value if isinstance(value, list) else [value]

    def first(self, name: str) -> str | None:
        """The Observatory's ``getFirstHttpHeader``: the joined value, None when absent
        (an empty value is ``""``, which every test reading it takes as absent)."""
        values = self.all(name)
        return values[0] if values else None

    @property
    def http_equiv(self) -> dict[str, list[str]]:
        """Meta policies of an HTML page (``content-security-policy``, ``referrer-policy``)."""
        if (self.first("content-type") or "").split(";")[0] not in HTML_TYPES or not self.body:
            return {}
        return _html.scan(self.body).http_equiv


@dataclass(frozen=True)
class Hop:
    """One step of the plain-HTTP redirect chain."""

    url: str
    status: int


@dataclass(frozen=True)
class Observation:
    """What a scan saw.

    ``response`` is the answer graded for headers (the HTTPS one when there is one);
    ``https`` is the HTTPS answer or None when the site has no HTTPS; ``preflight`` is
    the answer to ``OPTIONS`` with ``Origin: origin`` and
    ``Access-Control-Request-Method: GET``; ``http_route`` is the chain of answers to
    the same URL over plain HTTP (first request first) or None when nothing listens
    there; ``set_cookies`` are the Set-Cookie lines of the graded answer and of the
    redirects that led to it, which fill the cookie jar the cookies test reads.
    """

    response: Response
    https: Response | None
    preflight: Response | None = None
    origin: str = "https://bastion-scan.invalid"
    http_route: tuple[Hop, ...] | None = None
    http_verified: bool = True
    set_cookies: tuple[str, ...] = ()

    @classmethod
    def assuming_https(
        cls,
        url: str,
        headers: Iterable[tuple[str, str]],
        *,
        preflight_headers: Iterable[tuple[str, str]] | None = None,
        origin: str = "https://bastion-scan.invalid",
        body: str = "",
        status: int = 200,
        set_cookies: Iterable[str] | None = None,
    ) -> Observation:
        """Graded as if served over HTTPS with a correct HTTP->HTTPS redirect on the
        same host (what a TLS-terminating front end such as Cloud Run's provides).
        ``set_cookies`` defaults to the response's own Set-Cookie lines."""
        parts = urlsplit(url)
        https_url = parts._replace(scheme="https").geturl()
        response = Response.of(https_url, headers, body=body, status=status)
        preflight = (
            Response.of(https_url, preflight_headers) if preflight_headers is not None else None
        )
        route = (Hop(parts._replace(scheme="http").geturl(), 301), Hop(https_url, status))
        return cls(
            response=response,
            https=response,
            preflight=preflight,
            origin=origin,
            http_route=route,
            set_cookies=tuple(
                response.get_all("set-cookie") if set_cookies is None else set_cookies
            ),
        )


@dataclass
class Report:
    #: The Observatory release graded against (name and version of its npm package).
    reference: str
    algorithm_version: int
    score: int
    grade: str
    tests: list[TestResult] = field(default_factory=list)
    tests_passed: int = 0
    tests_quantity: int = 0
    #: The score before bonuses; bonuses count only when it is at least 90.
    score_without_bonuses: int = 0
    bonuses_counted: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TestResult:
    """One test's outcome: the Observatory's expectation identifier (``result``),
    whether it passes, and the score modifier, description and hint the grader adds."""

    __test__ = False  # not a pytest test class

    name: str
    result: str
    passed: bool
    modifier: int = 0
    description: str = ""
    hint: str = ""
    data: Any = None
