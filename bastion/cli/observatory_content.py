"""The Observatory tests that read the page itself: Content-Security-Policy (header
and ``<meta http-equiv>``) and Subresource Integrity (``<script>`` tags; "same site"
is the registrable domain of the Public Suffix List's ICANN section, as tldts reads it).

Each takes the graded :class:`~bastion.cli.observatory_model.Response`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import cache
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from bastion.cli import _csp, _html
from bastion.cli.observatory_model import HTML_TYPES, Response, TestResult

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


def _first_of(csp: _csp.Policy, *directives: str) -> set[str]:
    """The first directive's source set present (the same set object, as the Observatory
    edits it in place), or a fresh ``{"*"}``."""
    for directive in directives:
        if directive in csp:
            return csp[directive]
    return {"*"}


def csp_test(response: Response) -> TestResult:
    """``data`` is the combined policy (header and meta), absent when the test found no
    policy; the X-Frame-Options test reads its ``frame-ancestors`` from there."""
    name = "content-security-policy"
    header = response.all("content-security-policy")
    meta = response.http_equiv.get("content-security-policy", [])
    try:
        csp = _csp.parse(header + meta)
    except _csp.CSPSyntaxError:
        return TestResult(name, "csp-header-invalid", False)
    try:
        header_only = _csp.parse(header)
    except _csp.CSPSyntaxError:
        header_only = {}
    try:
        meta_only = _csp.parse_meta(meta)
    except _csp.CSPSyntaxError:
        meta_only = {}
    if not header_only and not meta_only:
        if response.first("content-security-policy-report-only"):
            return TestResult(name, "csp-not-implemented-but-reporting-enabled", False)
        return TestResult(name, "csp-not-implemented", False)

    script_src = _first_of(csp, "script-src", "default-src")
    style_src = _first_of(csp, "style-src", "default-src")
    object_src = _first_of(csp, "object-src", "default-src")
    for sources in (script_src, style_src):
        if _has_nonce_or_hash(sources):
            sources.discard("'unsafe-inline'")

    result: str | None = None
    if _has_nonce_or_hash(script_src) and "'strict-dynamic'" in script_src:
        # With 'strict-dynamic', browsers ignore host/scheme sources, 'self' and
        # 'unsafe-inline' in script-src: so does the grade.
        for source in list(script_src):
            if source.startswith(tuple(_BROAD)) or source in ("'self'", "'unsafe-inline'"):
                script_src.discard(source)
    elif "'strict-dynamic'" in script_src:
        result = "csp-header-invalid"

    active = [s for d, srcs in csp.items() if d not in _PASSIVE and d != "script-src" for s in srcs]
    active += script_src
    default = csp.get("default-src")
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
    if passed and _csp.DUPLICATE_WARNINGS_KEY in csp:
        result = "csp-implemented-but-duplicate-directives"
    data = {d: sorted(s) for d, s in csp.items() if d != _csp.DUPLICATE_WARNINGS_KEY}
    return TestResult(name, result, passed, data=data)


# --- Subresource Integrity -----------------------------------------------------------
@cache
def _icann_suffixes() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True)  # as tldts' parse() by default


def _registrable_domain(host: str) -> str | None:
    """tldts' ``parse(...).domain``: the registrable domain, None for an IP address or a
    bare public suffix."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return _icann_suffixes().privatesuffix(host) if host else None
    return None


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


def sri_test(response: Response) -> TestResult:
    name = "subresource-integrity"
    if (response.first("content-type") or "").split(";")[0] not in HTML_TYPES:
        return TestResult(name, "sri-not-implemented-response-not-html", True)
    scripts = _html.scan(response.body).scripts
    page = urlsplit(response.url)
    page_domain = _registrable_domain(page.hostname or "")
    result: str | None = None
    foreign = False
    external: dict[str, dict[str, str | None]] = {}
    for script in scripts:
        src = script.src
        if not src:
            continue
        protocol_relative = re.match(r"//[^/]", src) is not None
        absolute = re.match(r"https?://", src) is not None
        relative = not protocol_relative and not absolute
        same_site = (
            protocol_relative
            or relative
            or _registrable_domain(urlsplit(src).hostname or "") == page_domain
        )
        secure_origin = relative or (same_site and not protocol_relative)
        secure_scheme = (absolute and src.startswith("https:")) or (
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
