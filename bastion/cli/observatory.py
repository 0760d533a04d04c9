"""The MDN HTTP Observatory's grading, as a pure function of observed responses.

:func:`grade` follows one published release, :data:`REFERENCE` (the one the npm
registry serves; algorithm version 4, ten tests), test by test: its tests
(``src/analyzer/tests``) and its scoring (``src/scanner``): start at 100, add every
modifier; bonuses count only when the score without them is already at least 90; the
grade comes from the score rounded down to a multiple of 5. Headers are read as that
release's Node client presents them (:meth:`Response.first`), cookies as its cookie
jar keeps them (:mod:`._cookies`), pages as its HTML parser reads them (:mod:`._html`).
``tests/cli/test_observatory_differential.py`` grades generated responses with the release
itself and with this port.

Deliberate differences (docs/reference/cli-guide.md lists them with their reasons):

* no HSTS preload list (never ``hsts-preloaded`` / ``redirection-all-redirects-preloaded``);
* an HSTS ``max-age`` that is not a number is invalid here; the reference's
  ``parseInt`` gives NaN, which passes its six-month comparison;
* a preflight that echoes the scan's foreign ``Origin`` and allows credentials is
  universal access here; the reference never sees the Origin it sent.

Network access lives in :mod:`bastion.cli.scan`; everything here is data in,
data out, so the unit tests grade documented header sets without a server.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from bastion.cli import _cookies
from bastion.cli._node import parse_int, trim
from bastion.cli.observatory_chart import (
    ALGORITHM_VERSION,
    MINIMUM_SCORE_FOR_EXTRA_CREDIT,
    REFERENCE,
    SCORE_TABLE,
    grade_for,
)
from bastion.cli.observatory_content import csp_test, sri_test
from bastion.cli.observatory_headers import (
    cookies_test,
    cors_test,
    cross_origin_resource_policy_test,
    referrer_policy_test,
    x_content_type_options_test,
)
from bastion.cli.observatory_model import (
    Hop,
    Observation,
    Report,
    Response,
    TestResult,
)

__all__ = ["REFERENCE", "Hop", "Observation", "Report", "Response", "TestResult", "grade"]


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
    counted = without_bonus >= MINIMUM_SCORE_FOR_EXTRA_CREDIT
    final = max(with_bonus if counted else without_bonus, 0)
    return Report(
        reference=REFERENCE,
        algorithm_version=ALGORITHM_VERSION,
        score=final,
        grade=grade_for(final),
        tests=tests,
        tests_passed=sum(t.passed for t in tests),
        tests_quantity=len(tests),
        score_without_bonuses=without_bonus,
        bonuses_counted=counted,
    )


# --- Strict-Transport-Security ---------------------------------------------------
_SIX_MONTHS = 15552000  # the Observatory's "white lie" for 15768000


def hsts_test(observation: Observation) -> TestResult:
    name = "strict-transport-security"
    response = observation.https
    if response is None:
        return TestResult(name, "hsts-not-implemented-no-https", False)
    if not response.verified:
        return TestResult(name, "hsts-invalid-cert", False)
    headers = response.all("strict-transport-security")
    if not headers:
        return TestResult(name, "hsts-not-implemented", False)
    header = headers[0][:1024]
    max_age: int | None = None
    has_max_age = False
    for parameter in (trim(p).lower() for p in header.split(";")):
        if parameter.startswith("max-age="):
            has_max_age, max_age = True, parse_int(parameter[8:128])  # the last one counts
    # A "," means the header was sent more than once. max_age None is a max-age that is
    # not a number: invalid here on purpose (the reference's NaN passes).
    if "," in header or not has_max_age or max_age is None:
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
    header = observation.response.first("x-frame-options")
    if not header:
        result = "x-frame-options-not-implemented"
    else:
        value = trim(header[:1024]).lower()
        if value in ("deny", "sameorigin"):
            result = "x-frame-options-sameorigin-or-deny"
        elif value.startswith("allow-from"):
            result = "x-frame-options-allow-from-origin"
        else:
            result = "x-frame-options-header-invalid"
    csp = csp_test(observation.response).data
    if csp and "frame-ancestors" in csp:
        result = "x-frame-options-implemented-via-csp"
    passed = result not in ("x-frame-options-not-implemented", "x-frame-options-header-invalid")
    return TestResult(name, result, passed, data=header)


def _cookies_test(observation: Observation) -> TestResult:
    response = observation.response
    jar = _cookies.jar(list(observation.set_cookies), response.url)
    return cookies_test(response.all("set-cookie"), jar, hsts_test(observation).passed)


def _cors(observation: Observation) -> TestResult:
    preflight = observation.preflight
    if preflight is None:
        return cors_test(None, None, observation.origin, answered=False)
    return cors_test(
        preflight.first("access-control-allow-origin"),
        preflight.first("access-control-allow-credentials"),
        observation.origin,
        answered=True,
    )


ALL_TESTS: tuple[Callable[[Observation], TestResult], ...] = (
    lambda o: csp_test(o.response),
    _cookies_test,
    _cors,
    redirection_test,
    lambda o: referrer_policy_test(
        o.response.all("referrer-policy"), o.response.http_equiv.get("referrer-policy", [])
    ),
    hsts_test,
    lambda o: sri_test(o.response),
    lambda o: x_content_type_options_test(o.response.first("x-content-type-options")),
    x_frame_options_test,
    lambda o: cross_origin_resource_policy_test(o.response.first("cross-origin-resource-policy")),
)
