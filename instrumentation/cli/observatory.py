"""The MDN HTTP Observatory's grading, as a pure function of observed responses.

:func:`grade` reproduces the tests of mdn/mdn-http-observatory (``src/analyzer/tests``,
algorithm version 6: twelve tests) and its scoring (``src/scanner``): start at 100,
add every modifier; bonuses count only when the score without them is already at
least 90; the grade comes from the score rounded down to a multiple of 5.

What the Observatory does that this grader does not:

* no HSTS preload list (never ``hsts-preloaded`` / ``redirection-all-redirects-preloaded``);
* "same site" for Subresource Integrity compares the last two labels of the host
  instead of the public-suffix registrable domain;
* several Content-Security-Policy headers are parsed as separate policies (as
  browsers do) rather than joined into one string.

Network access lives in :mod:`instrumentation.cli.scan`; everything here is data in,
data out, so the unit tests grade documented header sets without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from instrumentation.cli import _csp, _html
from instrumentation.cli.observatory_chart import (
    ALGORITHM_VERSION,
    MINIMUM_SCORE_FOR_EXTRA_CREDIT,
    SCORE_TABLE,
    grade_for,
)
from instrumentation.cli.observatory_headers import (
    TestResult,
    cookies_test,
    cors_test,
    cross_origin_embedder_policy_test,
    cross_origin_opener_policy_test,
    cross_origin_resource_policy_test,
    referrer_policy_test,
    x_content_type_options_test,
)

__all__ = ["Hop", "Observation", "Report", "Response", "TestResult", "grade"]

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
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    def joined(self, name: str) -> str | None:
        """All lines of a header joined by ", " (how the Observatory's Node client
        presents a repeated header), or None when absent."""
        values = self.get_all(name)
        return ", ".join(values) if values else None

    @property
    def media_type(self) -> str:
        return (self.joined("content-type") or "").split(";")[0].strip()

    @property
    def http_equiv(self) -> dict[str, list[str]]:
        if self.media_type not in HTML_TYPES or not self.body:
            return {}
        try:
            return _html.scan(self.body).http_equiv
        except _html.HTMLError:
            return {}


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
    there; ``set_cookies`` are every Set-Cookie line the scan received.
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
    ) -> Observation:
        """Graded as if served over HTTPS with a correct HTTP->HTTPS redirect on the
        same host (what a TLS-terminating front end such as Cloud Run's provides)."""
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
            set_cookies=tuple(response.get_all("set-cookie")),
        )


@dataclass
class Report:
    algorithm_version: int
    score: int
    grade: str
    tests: list[TestResult] = field(default_factory=list)
    tests_passed: int = 0
    tests_quantity: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grade(observation: Observation) -> Report:
    """Run every test and score them like the Observatory's scanner."""
    tests = [test(observation) for test in ALL_TESTS]
    with_bonus = 100
    without_bonus = 100
    for test in tests:
        score = SCORE_TABLE[test.result]
        test.modifier, test.description = score.modifier, score.description
        test.hint = score.hint
        with_bonus += score.modifier
        if score.modifier < 0:
            without_bonus += score.modifier
    final = with_bonus if without_bonus >= MINIMUM_SCORE_FOR_EXTRA_CREDIT else without_bonus
    final = max(final, 0)
    return Report(
        algorithm_version=ALGORITHM_VERSION,
        score=final,
        grade=grade_for(final),
        tests=tests,
        tests_passed=sum(t.passed for t in tests),
        tests_quantity=len(tests),
    )


# --- Content-Security-Policy -----------------------------------------------------
_BROAD = frozenset(
    {"ftp:", "http:", "https:", "*", "http://*", "http://*.*", "https://*", "https://*.*"}
)
_INLINE = frozenset({"'unsafe-inline'", "data:"})
_BROAD_OR_INLINE = _BROAD | _INLINE
_PASSIVE = ("img-src", "media-src")
_NONCE_OR_HASH = ("'sha256-", "'sha384-", "'sha512-", "'nonce-")
_CSP_PASSING = frozenset(
    {
        "csp-implemented-with-no-unsafe",
        "csp-implemented-with-no-unsafe-default-src-none",
        "csp-implemented-with-unsafe-inline-in-style-src-only",
        "csp-implemented-with-insecure-scheme-in-passive-content-only",
    }
)


def _has_nonce_or_hash(sources: set[str]) -> bool:
    return any(s.startswith(_NONCE_OR_HASH) for s in sources)


def parsed_csp(observation: Observation) -> tuple[_csp.Policy, set[str]] | None:
    """The enforced policy (header and meta), or None when it cannot be parsed."""
    response = observation.response
    header = response.get_all("content-security-policy")
    meta = response.http_equiv.get("content-security-policy", [])
    try:
        return _csp.parse(header + meta)
    except _csp.CSPSyntaxError:
        return None


def csp_test(observation: Observation) -> TestResult:
    response = observation.response
    name = "content-security-policy"
    header = response.get_all("content-security-policy")
    meta = response.http_equiv.get("content-security-policy", [])
    parsed = parsed_csp(observation)
    if parsed is None:
        return TestResult(name, "csp-header-invalid", False)
    csp, duplicates = parsed
    try:
        header_only, _ = _csp.parse(header)
    except _csp.CSPSyntaxError:
        header_only = {}
    try:
        meta_only = _csp.parse_meta(meta)
    except _csp.CSPSyntaxError:
        meta_only = {}
    if not header_only and not meta_only:
        if response.get_all("content-security-policy-report-only"):
            return TestResult(name, "csp-not-implemented-but-reporting-enabled", False)
        return TestResult(name, "csp-not-implemented", False)

    any_source = {"*"}
    default = csp.get("default-src")
    script_src = set(csp.get("script-src") or default or any_source)
    style_src = set(csp.get("style-src") or default or any_source)
    object_src = set(csp.get("object-src") or default or any_source)
    for sources in (script_src, style_src):
        if _has_nonce_or_hash(sources):
            sources.discard("'unsafe-inline'")

    result: str | None = None
    if _has_nonce_or_hash(script_src) and "'strict-dynamic'" in script_src:
        # With 'strict-dynamic', browsers ignore host/scheme sources, 'self' and
        # 'unsafe-inline' in script-src: so does the grade.
        script_src = {
            s
            for s in script_src
            if s not in ("'self'", "'unsafe-inline'") and not s.startswith(tuple(_BROAD))
        }
    elif "'strict-dynamic'" in script_src:
        result = "csp-header-invalid"

    active = [s for d, srcs in csp.items() if d not in _PASSIVE and d != "script-src" for s in srcs]
    active += script_src
    passive = [s for d in _PASSIVE for s in (csp.get(d) or default or set())]
    https = urlsplit(response.url).scheme == "https"

    def insecure(sources: Iterable[str]) -> bool:
        return https and any(s.startswith(("http:", "ftp:")) for s in sources)

    checks: list[tuple[bool, str]] = [
        (
            bool(script_src & _BROAD_OR_INLINE) or bool(object_src & _BROAD),
            "csp-implemented-with-unsafe-inline",
        ),
        (insecure(active), "csp-implemented-with-insecure-scheme"),
        ("'unsafe-eval'" in script_src | style_src, "csp-implemented-with-unsafe-eval"),
        (insecure(passive), "csp-implemented-with-insecure-scheme-in-passive-content-only"),
        (
            bool(style_src & _BROAD_OR_INLINE),
            "csp-implemented-with-unsafe-inline-in-style-src-only",
        ),
        (default == {"'none'"}, "csp-implemented-with-no-unsafe-default-src-none"),
        (True, "csp-implemented-with-no-unsafe"),
    ]
    if result is None:
        result = next(expectation for failed, expectation in checks if failed)
    passed = result in _CSP_PASSING
    if passed and duplicates:
        result = "csp-implemented-but-duplicate-directives"
    data = {d: sorted(s) for d, s in csp.items()}
    return TestResult(name, result, passed, data=data)


# --- Strict-Transport-Security ---------------------------------------------------
_SIX_MONTHS = 15552000  # the Observatory's "white lie" for 15768000


def hsts_test(observation: Observation) -> TestResult:
    name = "strict-transport-security"
    response = observation.https
    if response is None:
        return TestResult(name, "hsts-not-implemented-no-https", False)
    if not response.verified:
        return TestResult(name, "hsts-invalid-cert", False)
    header = response.joined("strict-transport-security")
    if header is None:
        return TestResult(name, "hsts-not-implemented", False)
    header = header[:1024]
    max_age: int | None = None
    invalid = "," in header
    for parameter in (p.strip().lower() for p in header.split(";")):
        if parameter.startswith("max-age="):
            digits = parameter[8:128].strip().strip('"')
            if not digits.isdigit():
                invalid = True
            else:
                max_age = int(digits)
    if invalid or max_age is None:
        return TestResult(name, "hsts-header-invalid", False, data=header)
    if max_age < _SIX_MONTHS:
        return TestResult(name, "hsts-implemented-max-age-less-than-six-months", False, data=header)
    return TestResult(name, "hsts-implemented-max-age-at-least-six-months", True, data=header)


# --- redirection -------------------------------------------------------------------
def redirection_test(observation: Observation) -> TestResult:
    name = "redirection"
    route = observation.http_route
    if route is None:
        return TestResult(name, "redirection-not-needed-no-http", True)
    data = [hop.url for hop in route]
    if not observation.http_verified:
        return TestResult(name, "redirection-invalid-cert", False, data=data)
    first, last = urlsplit(route[0].url), urlsplit(route[-1].url)
    if len(route) == 1:
        result = "redirection-missing"
    elif last.scheme != "https":
        result = "redirection-not-to-https"
    elif urlsplit(route[1].url).scheme == "http":
        result = "redirection-not-to-https-on-initial-redirection"
    elif first.scheme == "http" and first.hostname != urlsplit(route[1].url).hostname:
        result = "redirection-off-host-from-http"
    else:
        result = "redirection-to-https"
    return TestResult(name, result, result == "redirection-to-https", data=data)


# --- X-Frame-Options -----------------------------------------------------------------
def x_frame_options_test(observation: Observation) -> TestResult:
    name = "x-frame-options"
    header = observation.response.joined("x-frame-options")
    if header is None:
        result = "x-frame-options-not-implemented"
    else:
        value = header[:1024].strip().lower()
        if value in ("deny", "sameorigin"):
            result = "x-frame-options-sameorigin-or-deny"
        elif value.startswith("allow-from"):
            result = "x-frame-options-allow-from-origin"
        else:
            result = "x-frame-options-header-invalid"
    parsed = parsed_csp(observation)
    if parsed is not None and parsed[0].get("frame-ancestors"):
        result = "x-frame-options-implemented-via-csp"
    passed = result not in ("x-frame-options-not-implemented", "x-frame-options-header-invalid")
    return TestResult(name, result, passed, data=header)


# --- Subresource Integrity -----------------------------------------------------------
def _site(host: str) -> str:
    return ".".join(host.lower().rstrip(".").split(".")[-2:])


_SRI_ORDER = (
    "sri-implemented-and-all-scripts-loaded-securely",
    "sri-implemented-and-external-scripts-loaded-securely",
    "sri-implemented-but-external-scripts-not-loaded-securely",
    "sri-not-implemented-but-external-scripts-loaded-securely",
    "sri-not-implemented-and-external-scripts-not-loaded-securely",
    "sri-not-implemented-response-not-html",
)


def _worse(new: str, old: str | None) -> str:
    if old is None or _SRI_ORDER.index(new) > _SRI_ORDER.index(old):
        return new
    return old


def sri_test(observation: Observation) -> TestResult:
    name = "subresource-integrity"
    response = observation.response
    if response.media_type not in HTML_TYPES:
        return TestResult(name, "sri-not-implemented-response-not-html", True)
    try:
        scripts = _html.scan(response.body).scripts
    except _html.HTMLError:
        return TestResult(name, "html-not-parseable", False)
    page = urlsplit(response.url)
    result: str | None = None
    foreign = False
    external: dict[str, dict[str, str | None]] = {}
    for script in scripts:
        src = script.src
        if not src:
            continue
        protocol_relative = src.startswith("//") and not src.startswith("///")
        absolute = src.lower().startswith(("http://", "https://"))
        relative = not protocol_relative and not absolute
        same_site = (
            relative
            or protocol_relative
            or (_site(urlsplit(src).hostname or "") == _site(page.hostname or ""))
        )
        secure_origin = relative or (same_site and not protocol_relative)
        secure_scheme = (absolute and src.lower().startswith("https://")) or (
            relative and page.scheme == "https"
        )
        if not secure_origin:
            foreign = True
            external[src] = {"crossorigin": script.crossorigin, "integrity": script.integrity}
            if script.integrity and not secure_scheme:
                result = _worse("sri-implemented-but-external-scripts-not-loaded-securely", result)
            elif not script.integrity and secure_scheme:
                result = _worse("sri-not-implemented-but-external-scripts-loaded-securely", result)
            elif not script.integrity:
                result = _worse(
                    "sri-not-implemented-and-external-scripts-not-loaded-securely", result
                )
        elif script.integrity and secure_scheme and result is None:
            result = "sri-implemented-and-all-scripts-loaded-securely"
    if not scripts:
        result = "sri-not-implemented-but-no-scripts-loaded"
    elif result is None:
        result = (
            "sri-implemented-and-external-scripts-loaded-securely"
            if foreign
            else "sri-not-implemented-but-all-scripts-loaded-from-secure-origin"
        )
    passed = result in (
        "sri-implemented-and-all-scripts-loaded-securely",
        "sri-implemented-and-external-scripts-loaded-securely",
        "sri-not-implemented-but-all-scripts-loaded-from-secure-origin",
        "sri-not-implemented-but-no-scripts-loaded",
    )
    return TestResult(name, result, passed, data=external)


def _cookies(observation: Observation) -> TestResult:
    return cookies_test(observation.set_cookies, hsts_test(observation).passed)


ALL_TESTS: tuple[Callable[[Observation], TestResult], ...] = (
    csp_test,
    _cookies,
    lambda o: cors_test(o.preflight.headers if o.preflight else None, o.origin),
    redirection_test,
    lambda o: referrer_policy_test(o.response.get_all("referrer-policy"), o.response.http_equiv),
    hsts_test,
    sri_test,
    lambda o: x_content_type_options_test(o.response.joined("x-content-type-options")),
    x_frame_options_test,
    lambda o: cross_origin_resource_policy_test(
        o.response.joined("cross-origin-resource-policy"), o.response.http_equiv
    ),
    lambda o: cross_origin_opener_policy_test(o.response.get_all("cross-origin-opener-policy")),
    lambda o: cross_origin_embedder_policy_test(o.response.get_all("cross-origin-embedder-policy")),
)
