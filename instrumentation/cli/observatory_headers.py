"""The Observatory tests that read one header each (see :mod:`.observatory`).

Each function takes the observed header value(s) and returns a
:class:`~instrumentation.cli.observatory.TestResult` whose ``result`` is the
Observatory's expectation identifier; the modifier is filled in by the grader.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import http_sf

from instrumentation.cli.observatory_model import TestResult


def _result(name: str, result: str, passed: bool, data: Any = None) -> TestResult:
    return TestResult(name, result, passed, data=data)


# --- CORS ------------------------------------------------------------------------------
def cors_test(preflight: Sequence[tuple[str, str]] | None, origin: str) -> TestResult:
    """Grade the answer to a preflight sent with ``Origin: origin``."""
    name = "cross-origin-resource-sharing"
    headers = {k.lower(): v for k, v in reversed(preflight or ())}  # first line wins
    allow_origin = headers.get("access-control-allow-origin")
    if preflight is None or not allow_origin:
        return _result(name, "cross-origin-resource-sharing-not-implemented", True)
    value = allow_origin[:256].strip().lower()
    credentials = headers.get("access-control-allow-credentials", "").strip().lower()
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
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "samesite":
            return value.strip().lower() not in ("lax", "strict", "none")
    return False


def _parse_set_cookie(line: str) -> tuple[str, dict[str, str]]:
    """RFC 6265 section 5.2: the cookie's name and its attributes (lower-cased names).
    (``http.cookies`` parses Cookie request headers and drops many real Set-Cookie
    values, e.g. ones with spaces.)"""
    pair, *parts = line.split(";")
    name, separator, _value = pair.partition("=")
    attributes: dict[str, str] = {}
    for part in parts:
        attribute, _, value = part.partition("=")
        attributes[attribute.strip().lower()] = value.strip()
    return (name.strip() if separator else ""), attributes


def cookies_test(set_cookies: Sequence[str], hsts_passed: bool) -> TestResult:
    """Grade every ``Set-Cookie`` line seen; ``hsts_passed`` is the HSTS test's pass."""
    name = "cookies"
    result: str | None = None
    for raw in set_cookies:
        if _invalid_samesite(raw):
            result = _worse("cookies-samesite-flag-invalid", result)
    jar: dict[str, dict[str, Any]] = {}
    for raw in set_cookies:
        key, attributes = _parse_set_cookie(raw)
        if key and key not in _IGNORED_COOKIES:
            jar[key] = {
                "secure": "secure" in attributes,
                "httponly": "httponly" in attributes,
                "samesite": (attributes.get("samesite") or "").lower() or None,
            }
    if not jar:
        return _result(name, "cookies-not-found", True)
    missing_samesite = False
    for key, cookie in jar.items():
        session = "login" in key.lower() or "sess" in key.lower()
        anticsrf = "csrf" in key.lower()
        secure, samesite = cookie["secure"], cookie["samesite"]
        if not secure and samesite == "none":
            result = _worse("cookies-samesite-flag-invalid", result)
        if not secure:
            unprotected = "cookies-without-secure-flag"
            result = _worse(unprotected + ("-but-protected-by-hsts" * hsts_passed), result)
        if anticsrf and not samesite:
            result = _worse("cookies-anticsrf-without-samesite-flag", result)
        if session and not secure:
            unprotected = "cookies-session-without-secure-flag"
            result = _worse(unprotected + ("-but-protected-by-hsts" * hsts_passed), result)
        if session and not cookie["httponly"]:
            result = _worse("cookies-session-without-httponly-flag", result)
        missing_samesite = missing_samesite or not samesite
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
    return _result(name, result, passed, data=jar)


# --- Referrer-Policy -------------------------------------------------------------------
_PRIVATE = ("no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin")
_LEAKY = ("origin", "origin-when-cross-origin", "unsafe-url", "no-referrer-when-downgrade")


def referrer_policy_test(headers: Sequence[str], http_equiv: dict[str, list[str]]) -> TestResult:
    """The last recognised value wins (header first, then ``<meta>``), as in browsers."""
    name = "referrer-policy"
    values = [*headers, *http_equiv.get("referrer-policy", [])]
    if not values:
        return _result(name, "referrer-policy-not-implemented", True)
    joined = ", ".join(values)
    known = [v.strip().lower() for v in joined.split(",") if v.strip().lower() in _PRIVATE + _LEAKY]
    policy = known[-1] if known else ""
    if policy in _PRIVATE:
        return _result(name, "referrer-policy-private", True, joined)
    if policy in _LEAKY:
        return _result(name, "referrer-policy-unsafe", False, joined)
    return _result(name, "referrer-policy-header-invalid", False, joined)


# --- X-Content-Type-Options ------------------------------------------------------------
def x_content_type_options_test(header: str | None) -> TestResult:
    name = "x-content-type-options"
    if header is None:
        return _result(name, "x-content-type-options-not-implemented", False)
    if header[:256].strip().lower() == "nosniff":
        return _result(name, "x-content-type-options-nosniff", True, header)
    return _result(name, "x-content-type-options-header-invalid", False, header)


# --- Cross-Origin-Resource-Policy ------------------------------------------------------
def cross_origin_resource_policy_test(
    header: str | None, http_equiv: dict[str, list[str]]
) -> TestResult:
    name = "cross-origin-resource-policy"
    meta = http_equiv.get("cross-origin-resource-policy", [])
    value = header if header else (meta[-1] if meta else None)
    if not value:
        return _result(name, "corp-not-implemented", True)
    value = value[:256].strip().lower()
    result = {
        "same-site": "corp-implemented-with-same-site",
        "same-origin": "corp-implemented-with-same-origin",
        "cross-origin": "corp-implemented-with-cross-origin",
    }.get(value, "corp-header-invalid")
    return _result(name, result, result != "corp-header-invalid", value)


# --- COOP / COEP (RFC 8941 structured-field tokens) ------------------------------------
def _token(value: str) -> str | None:
    """The bare token of a structured-field item (parameters such as report-to are
    ignored); None when the value is not a valid item or its bare item is not a token
    (a quoted string is not a policy)."""
    try:
        parsed: Any = http_sf.parse(value[:1024].strip().encode("latin-1"), tltype="item")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return None
    item = parsed[0]
    return str(item) if isinstance(item, http_sf.Token) else None


def _policy_test(
    name: str, prefix: str, headers: Sequence[str], results: dict[str, str]
) -> TestResult:
    if not headers:
        return _result(name, f"{prefix}-not-implemented", True)
    if len(headers) > 1:
        return _result(name, f"{prefix}-header-invalid", False, headers)
    token = _token(headers[0])
    result = results.get(token or "", f"{prefix}-header-invalid")
    return _result(name, result, not result.endswith("-invalid"), headers[0])


def cross_origin_opener_policy_test(headers: Sequence[str]) -> TestResult:
    return _policy_test(
        "cross-origin-opener-policy",
        "coop",
        headers,
        {
            "same-origin": "coop-implemented-with-same-origin",
            "same-origin-allow-popups": "coop-implemented-with-same-origin-allow-popups",
            "noopener-allow-popups": "coop-implemented-with-noopener-allow-popups",
            "unsafe-none": "coop-implemented-with-unsafe-none",
        },
    )


def cross_origin_embedder_policy_test(headers: Sequence[str]) -> TestResult:
    return _policy_test(
        "cross-origin-embedder-policy",
        "coep",
        headers,
        {
            "require-corp": "coep-implemented-with-require-corp",
            "credentialless": "coep-implemented-with-credentialless",
            "unsafe-none": "coep-implemented-with-unsafe-none",
        },
    )
