"""The Observatory tests that read response headers (see :mod:`.observatory`).

Each function takes header values as the Observatory sees them (see
:meth:`~bastion.cli.observatory_model.Response.first`: repeated lines joined
the Node way, ``""`` for an empty value, which these tests take as absent) and returns
a :class:`~bastion.cli.observatory_model.TestResult` whose ``result`` is the
Observatory's expectation identifier; the grader fills in the modifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.cli._cookies import Cookie
from bastion.cli._node import trim
from bastion.cli.observatory_model import TestResult


def _result(name: str, result: str, passed: bool, data: Any = None) -> TestResult:
    return TestResult(name, result, passed, data=data)


# --- CORS ------------------------------------------------------------------------------
def cors_test(
    allow_origin: str | None, allow_credentials: str | None, origin: str, *, answered: bool
) -> TestResult:
    """Grade the answer to a preflight sent with ``Origin: origin``.

    Universal access (the preflight echoes our foreign origin and allows credentials)
    is flagged here; the reference release never flags it, as it looks for the Origin
    it sent on the response object, where it is not (see the deliberate differences
    in docs/reference/cli-guide.md).
    """
    name = "cross-origin-resource-sharing"
    if not answered or not allow_origin:
        return _result(name, "cross-origin-resource-sharing-not-implemented", True)
    value = trim(allow_origin[:256]).lower()
    credentials = trim(allow_credentials or "").lower()
    if value == "*":
        result = "cross-origin-resource-sharing-implemented-with-public-access"
    elif allow_origin == origin and credentials == "true":
        result = "cross-origin-resource-sharing-implemented-with-universal-access"
    else:
        result = "cross-origin-resource-sharing-implemented-with-restricted-access"
    passed = not result.endswith("universal-access")
    return _result(name, result, passed, data=value)


# --- cookies -------------------------------------------------------------------------
_COOKIE_ORDER = (
    "cookies-without-secure-flag-but-protected-by-hsts",
    "cookies-without-secure-flag",
    "cookies-session-without-secure-flag-but-protected-by-hsts",
    "cookies-samesite-flag-invalid",
    "cookies-anticsrf-without-samesite-flag",
    "cookies-session-without-httponly-flag",
    "cookies-session-without-secure-flag",
)
_IGNORED_COOKIES = frozenset({"heroku-session-affinity"})


def _worse(new: str, old: str | None) -> str:
    if old is None or _COOKIE_ORDER.index(new) > _COOKIE_ORDER.index(old):
        return new
    return old


def _invalid_samesite(raw: str) -> bool:
    """Any ``SameSite`` attribute of a raw line without a Strict/Lax/None value (only
    the text up to a second ``=`` is read, as the Observatory reads it)."""
    for part in trim(raw).split(";"):
        key, *rest = trim(part).split("=")
        if trim(key).lower() == "samesite":
            value = rest[0] if rest else ""
            if not value or trim(value).lower() not in ("lax", "strict", "none"):
                return True
    return False


def cookies_test(raw_lines: Sequence[str], jar: Sequence[Cookie], hsts_passed: bool) -> TestResult:
    """Grade the cookies a jar kept (:func:`bastion.cli._cookies.jar`);
    ``raw_lines`` are the graded response's own ``Set-Cookie`` lines, checked for
    malformed ``SameSite`` attributes; ``hsts_passed`` is the HSTS test's pass."""
    name = "cookies"
    result: str | None = None
    for raw in raw_lines:
        if _invalid_samesite(raw):
            result = _worse("cookies-samesite-flag-invalid", result)
    cookies = [c for c in jar if c.name and c.name not in _IGNORED_COOKIES]
    if not cookies:
        return _result(name, "cookies-not-found", True)
    missing_samesite = False
    for cookie in cookies:
        key = cookie.name.lower()
        session = "login" in key or "sess" in key
        if not cookie.secure and cookie.same_site == "none":
            result = _worse("cookies-samesite-flag-invalid", result)
        if not cookie.secure:
            unprotected = "cookies-without-secure-flag"
            result = _worse(unprotected + ("-but-protected-by-hsts" * hsts_passed), result)
        if "csrf" in key and not cookie.same_site:
            result = _worse("cookies-anticsrf-without-samesite-flag", result)
        if session and not cookie.secure:
            unprotected = "cookies-session-without-secure-flag"
            result = _worse(unprotected + ("-but-protected-by-hsts" * hsts_passed), result)
        if session and not cookie.http_only:
            result = _worse("cookies-session-without-httponly-flag", result)
        missing_samesite = missing_samesite or not cookie.same_site
    if result is None:
        result = (
            "cookies-secure-with-httponly-sessions"
            if missing_samesite
            else "cookies-secure-with-httponly-sessions-and-samesite"
        )
    passed = result in (
        "cookies-secure-with-httponly-sessions",
        "cookies-secure-with-httponly-sessions-and-samesite",
    )
    data = {
        c.name: {
            "domain": c.domain,
            "path": c.path,
            "secure": c.secure,
            "httponly": c.http_only,
            "samesite": c.same_site,
        }
        for c in cookies
    }
    return _result(name, result, passed, data=data)


# --- Referrer-Policy -------------------------------------------------------------------
_PRIVATE = ("no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin")
_LEAKY = ("origin", "origin-when-cross-origin", "unsafe-url", "no-referrer-when-downgrade")


def referrer_policy_test(headers: Sequence[str], meta: Sequence[str]) -> TestResult:
    """The last recognised value wins, header first, then ``<meta name=referrer>``."""
    name = "referrer-policy"
    if not headers and not meta:
        return _result(name, "referrer-policy-not-implemented", True)
    joined = ", ".join([*headers, *meta])
    known = [trim(v.lower()) for v in joined.split(",") if trim(v.lower()) in _PRIVATE + _LEAKY]
    policy = known[-1] if known else ""
    if policy in _PRIVATE:
        return _result(name, "referrer-policy-private", True, joined)
    if policy in _LEAKY:
        return _result(name, "referrer-policy-unsafe", False, joined)
    return _result(name, "referrer-policy-header-invalid", False, joined)


# --- X-Content-Type-Options ------------------------------------------------------------
def x_content_type_options_test(header: str | None) -> TestResult:
    name = "x-content-type-options"
    if not header:
        return _result(name, "x-content-type-options-not-implemented", False)
    if trim(header[:256]).lower() == "nosniff":
        return _result(name, "x-content-type-options-nosniff", True, header)
    return _result(name, "x-content-type-options-header-invalid", False, header)


# --- Cross-Origin-Resource-Policy ------------------------------------------------------
def cross_origin_resource_policy_test(header: str | None) -> TestResult:
    name = "cross-origin-resource-policy"
    value = trim(header[:256]).lower() if header else ""
    if not value:
        return _result(name, "corp-not-implemented", True)
    result = {
        "same-site": "corp-implemented-with-same-site",
        "same-origin": "corp-implemented-with-same-origin",
        "cross-origin": "corp-implemented-with-cross-origin",
    }.get(value, "corp-header-invalid")
    return _result(name, result, result != "corp-header-invalid", value)
