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
  browsers do) rather than joined into one string;
* an HSTS ``max-age`` that is not a number is invalid here; the Observatory's
  ``parseInt`` turns it into NaN, which then passes its six-month comparison, while
  browsers ignore such a header.

Network access lives in :mod:`instrumentation.cli.scan`; everything here is data in,
data out, so the unit tests grade documented header sets without a server.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from instrumentation.cli.observatory_chart import (
    ALGORITHM_VERSION,
    MINIMUM_SCORE_FOR_EXTRA_CREDIT,
    SCORE_TABLE,
    grade_for,
)
from instrumentation.cli.observatory_content import csp_test, parsed_csp, sri_test
from instrumentation.cli.observatory_headers import (
    cookies_test,
    cors_test,
    cross_origin_embedder_policy_test,
    cross_origin_opener_policy_test,
    cross_origin_resource_policy_test,
    referrer_policy_test,
    x_content_type_options_test,
)
from instrumentation.cli.observatory_model import (
    Hop,
    Observation,
    Report,
    Response,
    TestResult,
)

__all__ = ["Hop", "Observation", "Report", "Response", "TestResult", "grade"]


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
    parsed = parsed_csp(observation.response)
    if parsed is not None and parsed[0].get("frame-ancestors"):
        result = "x-frame-options-implemented-via-csp"
    passed = result not in ("x-frame-options-not-implemented", "x-frame-options-header-invalid")
    return TestResult(name, result, passed, data=header)


def _cookies(observation: Observation) -> TestResult:
    return cookies_test(observation.set_cookies, hsts_test(observation).passed)


ALL_TESTS: tuple[Callable[[Observation], TestResult], ...] = (
    lambda o: csp_test(o.response),
    _cookies,
    lambda o: cors_test(o.preflight.headers if o.preflight else None, o.origin),
    redirection_test,
    lambda o: referrer_policy_test(o.response.get_all("referrer-policy"), o.response.http_equiv),
    hsts_test,
    lambda o: sri_test(o.response),
    lambda o: x_content_type_options_test(o.response.joined("x-content-type-options")),
    x_frame_options_test,
    lambda o: cross_origin_resource_policy_test(
        o.response.joined("cross-origin-resource-policy"), o.response.http_equiv
    ),
    lambda o: cross_origin_opener_policy_test(o.response.get_all("cross-origin-opener-policy")),
    lambda o: cross_origin_embedder_policy_test(o.response.get_all("cross-origin-embedder-policy")),
)
