"""The MDN HTTP Observatory's score table and grade chart (``src/grader/charts.js`` of
the reference release, :data:`REFERENCE`).

Every test result ("expectation") carries a score modifier; the identifiers below are
the Observatory's own so that a row of ``bastion scan --json`` can be compared with the
Observatory's output. Descriptions and hints are paraphrased.
"""

from __future__ import annotations

from typing import NamedTuple

#: The Observatory release the port follows: the one the npm registry serves
#: (``tests/observatory_ref/package.json`` pins the same for the differential test).
REFERENCE = "@mdn/mdn-http-observatory 1.4.8"
ALGORITHM_VERSION = 4
MINIMUM_SCORE_FOR_EXTRA_CREDIT = 90

#: (lowest score, grade), highest first; a score maps to the grade of its multiple of 5.
GRADE_CHART: tuple[tuple[int, str], ...] = (
    (100, "A+"),
    (90, "A"),
    (85, "A-"),
    (80, "B+"),
    (70, "B"),
    (65, "B-"),
    (60, "C+"),
    (50, "C"),
    (45, "C-"),
    (40, "D+"),
    (30, "D"),
    (25, "D-"),
    (0, "F"),
)


class Score(NamedTuple):
    modifier: int
    description: str
    hint: str


_NO_HINT = ""
_CSP_HINT = "Start from default-src 'none' and allow only what the page needs."
_SECURE_HINT = "Set the Secure flag on every cookie and serve HSTS."
_REDIRECT_HINT = "Redirect http:// to https:// on the same host first, then elsewhere."
_REFERRER_HINT = "Send Referrer-Policy: strict-origin-when-cross-origin or stricter."
_XFO_HINT = "Send CSP frame-ancestors 'none' (or 'self')."

SCORE_TABLE: dict[str, Score] = {
    # --- Content-Security-Policy --------------------------------------------------
    "csp-implemented-with-no-unsafe-default-src-none": Score(
        10, "CSP with default-src 'none' and no unsafe sources.", _NO_HINT
    ),
    "csp-implemented-with-no-unsafe": Score(
        5, "CSP without 'unsafe-inline' or 'unsafe-eval'.", "Set default-src 'none'."
    ),
    "csp-implemented-with-unsafe-inline-in-style-src-only": Score(
        0,
        "CSP whose only unsafe sources ('unsafe-inline', data:, broad) are in style-src.",
        "Lock down style-src: drop 'unsafe-inline', data: and broad sources.",
    ),
    "csp-implemented-with-insecure-scheme-in-passive-content-only": Score(
        -10,
        "CSP lets images or media load over plain HTTP.",
        "Allow only https: sources in img-src/media-src/default-src.",
    ),
    "csp-implemented-with-unsafe-eval": Score(
        -10, "CSP allows 'unsafe-eval'.", "Remove eval() from the code, then 'unsafe-eval'."
    ),
    "csp-implemented-with-unsafe-inline": Score(
        -20,
        "CSP is unsafe: 'unsafe-inline' or data: in script-src, broad sources in "
        "script-src/object-src, or those directives unrestricted.",
        "Use nonces or hashes instead of 'unsafe-inline'; set object-src 'none'.",
    ),
    "csp-implemented-with-insecure-scheme": Score(
        -20, "CSP lets resources load over plain HTTP.", "Remove http: sources from the CSP."
    ),
    "csp-header-invalid": Score(
        -25,
        "CSP cannot be parsed (a repeated directive, 'strict-dynamic' without a nonce "
        "or hash, or an empty policy).",
        "Fix the policy's syntax.",
    ),
    "csp-not-implemented": Score(-25, "No Content-Security-Policy header.", _CSP_HINT),
    "csp-not-implemented-but-reporting-enabled": Score(
        -25,
        "Only Content-Security-Policy-Report-Only is sent; nothing is enforced.",
        "Enforce the policy once its reports are clean.",
    ),
    "csp-implemented-but-duplicate-directives": Score(
        0, "CSP repeats report-uri/report-to.", "Remove the duplicate directives."
    ),
    # --- cookies ------------------------------------------------------------------
    "cookies-secure-with-httponly-sessions-and-samesite": Score(
        5, "Every cookie is Secure, session cookies HttpOnly, and all use SameSite.", _NO_HINT
    ),
    "cookies-secure-with-httponly-sessions": Score(
        0, "Every cookie is Secure and session cookies HttpOnly.", "Add SameSite."
    ),
    "cookies-not-found": Score(0, "No cookies set.", _NO_HINT),
    "cookies-without-secure-flag-but-protected-by-hsts": Score(
        -5, "Cookies lack Secure, but HSTS keeps them off plain HTTP.", "Add Secure."
    ),
    "cookies-session-without-secure-flag-but-protected-by-hsts": Score(
        -10, "A session cookie lacks Secure, but HSTS keeps it off HTTP.", "Add Secure."
    ),
    "cookies-without-secure-flag": Score(
        -20, "Cookies without the Secure flag, or set over HTTP.", _SECURE_HINT
    ),
    "cookies-samesite-flag-invalid": Score(
        -20,
        "A SameSite value other than Strict/Lax (or None without Secure).",
        "Use SameSite=Strict or Lax.",
    ),
    "cookies-anticsrf-without-samesite-flag": Score(
        -20, "An anti-CSRF cookie without SameSite.", "Use SameSite=Strict or Lax."
    ),
    "cookies-session-without-httponly-flag": Score(
        -30, "A session cookie without HttpOnly.", "Add HttpOnly."
    ),
    "cookies-session-without-secure-flag": Score(
        -40, "A session cookie without Secure, or set over HTTP.", _SECURE_HINT
    ),
    # --- CORS ---------------------------------------------------------------------
    "cross-origin-resource-sharing-not-implemented": Score(
        0, "Nothing is readable cross-origin.", _NO_HINT
    ),
    "cross-origin-resource-sharing-implemented-with-public-access": Score(
        0, "Public content readable by any origin (Access-Control-Allow-Origin: *).", _NO_HINT
    ),
    "cross-origin-resource-sharing-implemented-with-restricted-access": Score(
        0, "Readable cross-origin, but only by specific origins.", _NO_HINT
    ),
    "cross-origin-resource-sharing-implemented-with-universal-access": Score(
        -50,
        "A foreign origin is echoed back with credentials allowed: any site can read "
        "signed-in users' data.",
        "Allow only a fixed list of origins (BASTION_CORS_ORIGINS); never reflect Origin.",
    ),
    # --- redirection --------------------------------------------------------------
    "redirection-all-redirects-preloaded": Score(
        0, "Every host redirected to is HSTS-preloaded.", _NO_HINT
    ),
    "redirection-to-https": Score(
        0, "HTTP redirects to HTTPS on the same host, and ends on HTTPS.", _NO_HINT
    ),
    "redirection-not-needed-no-http": Score(0, "Nothing listens on plain HTTP.", _NO_HINT),
    "redirection-off-host-from-http": Score(
        -5, "HTTP first redirects to HTTPS on another host, so HSTS is never set.", _REDIRECT_HINT
    ),
    "redirection-not-to-https-on-initial-redirection": Score(
        -10, "HTTP first redirects to another HTTP URL.", _REDIRECT_HINT
    ),
    "redirection-not-to-https": Score(
        -20, "Redirects, but the final destination is not HTTPS.", _REDIRECT_HINT
    ),
    "redirection-missing": Score(-20, "Plain HTTP does not redirect to HTTPS.", _REDIRECT_HINT),
    "redirection-invalid-cert": Score(
        -20, "An invalid certificate chain during redirection.", "Install a valid certificate."
    ),
    # --- Referrer-Policy ----------------------------------------------------------
    "referrer-policy-private": Score(
        5,
        "Referrer-Policy is no-referrer, same-origin, strict-origin or "
        "strict-origin-when-cross-origin.",
        _NO_HINT,
    ),
    "referrer-policy-not-implemented": Score(0, "No Referrer-Policy.", _REFERRER_HINT),
    "referrer-policy-unsafe": Score(
        -5,
        "Referrer-Policy leaks URLs (origin, origin-when-cross-origin, unsafe-url, "
        "no-referrer-when-downgrade).",
        _REFERRER_HINT,
    ),
    "referrer-policy-header-invalid": Score(
        -5, "Referrer-Policy cannot be recognized.", _REFERRER_HINT
    ),
    # --- Strict-Transport-Security -------------------------------------------------
    "hsts-preloaded": Score(5, "Preloaded in browsers' HSTS list.", _NO_HINT),
    "hsts-implemented-max-age-at-least-six-months": Score(
        0,
        "HSTS max-age of at least six months.",
        "Consider preload: includeSubDomains, preload, max-age >= 31536000.",
    ),
    "hsts-implemented-max-age-less-than-six-months": Score(
        -10, "HSTS max-age under six months (15552000).", "Raise BASTION_HSTS_MAX_AGE."
    ),
    "hsts-not-implemented": Score(
        -20,
        "No Strict-Transport-Security header.",
        "Send HSTS over HTTPS (behind a proxy: list it in BASTION_TRUSTED_PROXIES).",
    ),
    "hsts-header-invalid": Score(
        -20, "Strict-Transport-Security cannot be recognized (or is sent twice).", _NO_HINT
    ),
    "hsts-not-implemented-no-https": Score(
        -20,
        "HSTS cannot be set: the site is not served over HTTPS.",
        "Serve HTTPS (for a local instance behind a TLS proxy: --assume-https).",
    ),
    "hsts-invalid-cert": Score(
        -20,
        "HSTS cannot work: the certificate chain was not verified.",
        "Use a valid certificate (or pass its CA with --ca-bundle).",
    ),
    # --- Subresource Integrity ----------------------------------------------------
    "sri-implemented-and-all-scripts-loaded-securely": Score(
        5, "SRI on scripts, all from the same origin.", _NO_HINT
    ),
    "sri-implemented-and-external-scripts-loaded-securely": Score(
        5, "SRI on external scripts, all loaded over HTTPS.", _NO_HINT
    ),
    "sri-not-implemented-response-not-html": Score(0, "Not HTML: SRI does not apply.", _NO_HINT),
    "sri-not-implemented-but-no-scripts-loaded": Score(0, "No script tags.", _NO_HINT),
    "sri-not-implemented-but-all-scripts-loaded-from-secure-origin": Score(
        0, "No SRI, but every script comes from the same origin.", "Add SRI for the bonus."
    ),
    "sri-not-implemented-but-external-scripts-loaded-securely": Score(
        -5, "External scripts over HTTPS but without SRI.", "Add integrity= to them."
    ),
    "sri-implemented-but-external-scripts-not-loaded-securely": Score(
        -20, "SRI, but external scripts load over HTTP or //.", "Load them over HTTPS."
    ),
    "sri-not-implemented-and-external-scripts-not-loaded-securely": Score(
        -50,
        "External scripts over HTTP or // and without SRI.",
        "Load them over HTTPS with integrity=.",
    ),
    "html-not-parseable": Score(-20, "Claims to be HTML but cannot be parsed.", _NO_HINT),
    # --- X-Content-Type-Options ---------------------------------------------------
    "x-content-type-options-nosniff": Score(0, "X-Content-Type-Options: nosniff.", _NO_HINT),
    "x-content-type-options-not-implemented": Score(
        -5, "No X-Content-Type-Options.", "Send X-Content-Type-Options: nosniff."
    ),
    "x-content-type-options-header-invalid": Score(
        -5, "X-Content-Type-Options cannot be recognized.", "Send nosniff (once)."
    ),
    # --- X-Frame-Options ----------------------------------------------------------
    "x-frame-options-implemented-via-csp": Score(
        5, "Framing controlled by CSP frame-ancestors.", _NO_HINT
    ),
    "x-frame-options-sameorigin-or-deny": Score(
        0, "X-Frame-Options is SAMEORIGIN or DENY.", _XFO_HINT
    ),
    "x-frame-options-allow-from-origin": Score(0, "X-Frame-Options uses ALLOW-FROM.", _XFO_HINT),
    "x-frame-options-not-implemented": Score(
        -20, "Neither X-Frame-Options nor frame-ancestors: clickjacking possible.", _XFO_HINT
    ),
    "x-frame-options-header-invalid": Score(
        -20, "X-Frame-Options cannot be recognized (or is sent twice).", _XFO_HINT
    ),
    # --- Cross-Origin-Resource-Policy ---------------------------------------------
    "corp-not-implemented": Score(
        0, "No Cross-Origin-Resource-Policy (defaults to cross-origin).", _NO_HINT
    ),
    "corp-implemented-with-same-origin": Score(10, "CORP same-origin.", _NO_HINT),
    "corp-implemented-with-same-site": Score(10, "CORP same-site.", _NO_HINT),
    "corp-implemented-with-cross-origin": Score(0, "CORP cross-origin.", _NO_HINT),
    "corp-header-invalid": Score(
        -5, "Cross-Origin-Resource-Policy cannot be recognized.", "Send same-origin."
    ),
}


def grade_for(score: int) -> str:
    """The letter grade: a score is rounded down to a multiple of 5, capped at 100."""
    bucket = min(max(score, 0) // 5 * 5, 100)
    return next(grade for floor, grade in GRADE_CHART if bucket >= floor)
