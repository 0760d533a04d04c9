"""The Observatory tests that read the page itself: Content-Security-Policy (header
and ``<meta http-equiv>``) and Subresource Integrity (``<script>`` tags).

Each takes the graded :class:`~instrumentation.cli.observatory_model.Response`.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from instrumentation.cli import _csp, _html
from instrumentation.cli.observatory_model import HTML_TYPES, Response, TestResult

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


def parsed_csp(response: Response) -> tuple[_csp.Policy, set[str]] | None:
    """The enforced policy (header and meta), or None when it cannot be parsed."""
    header = response.get_all("content-security-policy")
    meta = response.http_equiv.get("content-security-policy", [])
    try:
        return _csp.parse(header + meta)
    except _csp.CSPSyntaxError:
        return None


def csp_test(response: Response) -> TestResult:
    name = "content-security-policy"
    header = response.get_all("content-security-policy")
    meta = response.http_equiv.get("content-security-policy", [])
    parsed = parsed_csp(response)
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


def sri_test(response: Response) -> TestResult:
    name = "subresource-integrity"
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
