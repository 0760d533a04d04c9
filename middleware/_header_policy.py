"""The security headers Bastion sends, built once with ``secure``'s builders, and the
single pass that merges them into an app's response.

Per response, only three things vary: whether the request came over HTTPS (HSTS),
the CSP nonce (``html`` preset) and the CORS answer. Everything else (names, values,
who wins each header, in both ``str`` for WSGI and ``bytes`` for ASGI) is computed
at startup into a :class:`HeaderEditor`.

Merge rules, per header name (case-insensitive):

* *ungoverned* (any header Bastion does not send): passed through untouched, in
  order, every occurrence (several ``Set-Cookie`` included);
* *app wins*: if the app set it, every app occurrence is kept and Bastion's is not
  added; otherwise Bastion's is added;
* *Bastion wins*: the app's occurrences are dropped and Bastion's value is added once;
* ``Server`` and ``X-Powered-By``: dropped (Bastion wins with no value).

:data:`DEFAULT_WINNERS` holds the defaults; ``BASTION_HEADERS_MERGE`` changes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from secure import (
    CacheControl,
    ContentSecurityPolicy,
    CrossOriginOpenerPolicy,
    CrossOriginResourcePolicy,
    CustomHeader,
    ReferrerPolicy,
    StrictTransportSecurity,
    XContentTypeOptions,
    XFrameOptions,
    XPermittedCrossDomainPolicies,
)
from secure.headers import BaseHeader

from bastion.middleware._cors_policy import ACCESS_CONTROL_HEADERS
from bastion.middleware._header_names import DEFAULT_WINNERS, REMOVED
from bastion.middleware._header_settings import HeaderSettings
from bastion.middleware.routes import Route

__all__ = [
    "DEFAULT_WINNERS",
    "NONCE_KEY",
    "REMOVED",
    "HeaderEditor",
    "Plan",
    "cors_plan",
    "header_plan",
    "observe_plan",
]

NONCE_KEY = "bastion.csp_nonce"
"""WSGI environ key and ASGI scope key holding the request's CSP nonce (html preset)."""

REPORT_GROUP = "csp-endpoint"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PLACEHOLDER = "bastionNoncePlaceholder"  # base64 alphabet, so secure's nonce() accepts it


_KNOWN_NAMES_MAX = 512
# Rules of the merge pass (plain ints: compared once per app header).
APP, DROP, VARY, CTYPE, CACHE = 1, 2, 3, 4, 5


# --- the preset, built with secure's builders ------------------------------------------
def preset_headers(
    settings: HeaderSettings, *, https: bool = True, report_only: bool | None = None
) -> list[BaseHeader]:
    """Bastion's headers for the configured preset (HSTS excluded: see :func:`hsts`).
    In the ``html`` preset the CSP carries a placeholder replaced by each request's nonce.

    Reports: ``report-uri`` always; ``report-to`` and ``Reporting-Endpoints`` only on
    HTTPS, where Chromium uses them (it ignores ``Reporting-Endpoints`` on a plain-http
    origin, and ``report-uri`` whenever ``report-to`` is present, so an http page with
    both would report nothing). ``report_only`` defaults to ``BASTION_CSP_REPORT_ONLY``."""
    csp = ContentSecurityPolicy()
    if settings.headers_preset == "html":
        nonce = ContentSecurityPolicy.nonce(_PLACEHOLDER)
        (
            # 'report-sample': reports of inline violations carry the first 40
            # characters of the offending code instead of "".
            csp.default_src("'self'")
            .script_src(nonce, "'strict-dynamic'", "'report-sample'")
            .style_src("'self'", nonce, "'report-sample'")
            .object_src("'none'")
            .base_uri("'none'")
            .frame_ancestors("'none'")
            .form_action("'self'")
        )
        if settings.csp_connect_src:  # without it, connect-src falls back to default-src
            csp.connect_src("'self'", *settings.csp_connect_src)
    else:
        # An API serves no documents to sample from, and 'none' must stand alone.
        csp.default_src("'none'").frame_ancestors("'none'")
    headers: list[BaseHeader] = [csp]
    report_uri = settings.csp_report_uri or settings.csp_report_path
    if report_uri:
        csp.report_uri(report_uri)
        if https:
            csp.report_to(REPORT_GROUP)
            headers.append(CustomHeader("Reporting-Endpoints", f'{REPORT_GROUP}="{report_uri}"'))
    if settings.csp_report_only if report_only is None else report_only:
        csp.report_only()
    headers += [
        XFrameOptions().deny(),
        XContentTypeOptions().nosniff(),
        ReferrerPolicy().no_referrer(),
        CrossOriginOpenerPolicy().same_origin(),
        CrossOriginResourcePolicy().same_origin(),
        XPermittedCrossDomainPolicies().none(),
        CacheControl().no_store(),
    ]
    return headers


def hsts(settings: HeaderSettings) -> tuple[str, str] | None:
    if settings.hsts_max_age <= 0:
        return None
    header = StrictTransportSecurity().max_age(settings.hsts_max_age).include_subdomains()
    return header.header_name, header.header_value


# --- plans: what one response variant gets, as plain strings ---------------------------
@dataclass(frozen=True)
class Plan:
    """Merge rules by lower-case name, Bastion's headers, and the nonce CSP if any.

    ``covers``: a Bastion header (lower-case name) is also left out when the app set one
    of these app-wins headers (observe: the app's enforced CSP covers Bastion's
    report-only copy, as in enforce the app's CSP would win)."""

    rules: Mapping[str, int] = field(default_factory=dict)
    tail: tuple[tuple[str, str], ...] = ()
    nonce_csp: tuple[str, tuple[str, ...]] | None = None  # (name, value split on nonce)
    vary: bool = False
    covers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __or__(self, other: Plan) -> Plan:
        return Plan(
            {**self.rules, **other.rules},
            self.tail + other.tail,
            self.nonce_csp or other.nonce_csp,
            self.vary or other.vary,
            {**self.covers, **other.covers},
        )


def winners(settings: HeaderSettings) -> dict[str, str]:
    found = {**DEFAULT_WINNERS, **dict.fromkeys(REMOVED, "bastion")}
    found.update(settings.headers_merge)
    return found


def header_plan(settings: HeaderSettings, *, https: bool, route: Route | None = None) -> Plan:
    """The security-header part of a response's plan (enforce mode)."""
    pairs = [(h.header_name, h.header_value) for h in preset_headers(settings, https=https)]
    strict = hsts(settings)
    if https and strict:
        pairs.append(strict)
    pairs = _with_route(pairs, route)
    who = winners(settings)
    rules: dict[str, int] = {}
    for name in [*(p[0].lower() for p in pairs), *REMOVED]:
        rules[name] = DROP if who.get(name, "app") == "bastion" else APP
    # A header Bastion can send over HTTPS is still governed over HTTP (the app's
    # HSTS on a plain-HTTP hop is dropped too when Bastion wins it).
    if strict and who.get(strict[0].lower()) == "bastion":
        rules[strict[0].lower()] = DROP
    for name in REMOVED:
        if who.get(name) == "app":
            rules.pop(name, None)
    nonce_csp = _split_nonce(pairs)
    if nonce_csp is not None:
        # Nonce-bearing documents must not be cached (a cached nonce is a known one):
        # the app's Cache-Control is replaced on HTML responses unless the merge
        # setting says otherwise, and kept on other content types.
        rules["content-type"] = CTYPE
        if rules.get("cache-control") == APP:
            rules["cache-control"] = CACHE
    return Plan(rules, tuple(pairs), nonce_csp)


_CSP = "content-security-policy"
_CSP_RO = "content-security-policy-report-only"
_REPORTING = "reporting-endpoints"


def observe_plan(settings: HeaderSettings, *, https: bool, route: Route | None = None) -> Plan:
    """Observe mode: the CSP enforce would send, as ``Content-Security-Policy-Report-Only``
    (with its ``Reporting-Endpoints`` on HTTPS), and nothing else: no app header is
    dropped or replaced, no other header added, Cache-Control left alone.

    Bastion's report-only policy is left out where enforce would not send Bastion's
    CSP either: when the app sets its own ``Content-Security-Policy`` or
    ``-Report-Only`` and the app wins them (the default)."""
    preset = [
        (h.header_name, h.header_value)
        for h in preset_headers(settings, https=https, report_only=True)
    ]
    if route is not None:  # a route's own CSP is what enforce would send there
        renamed = {
            (_CSP_RO if name.lower() == _CSP else name): value
            for name, value in route.headers.items()
        }
        route = Route(headers=renamed)
    pairs = [p for p in _with_route(preset, route) if p[0].lower() in (_CSP_RO, _REPORTING)]
    who = winners(settings)
    rules = {name: APP for name in (_CSP, _CSP_RO, _REPORTING) if who.get(name) == "app"}
    covers = {_CSP_RO: tuple(n for n in (_CSP,) if n in rules)}
    nonce_csp = _split_nonce(pairs)
    return Plan(rules, tuple(pairs), nonce_csp, covers=covers)


def _with_route(pairs: list[tuple[str, str]], route: Route | None) -> list[tuple[str, str]]:
    if route is None:
        return pairs
    for name, value in route.headers.items():
        pairs = [p for p in pairs if p[0].lower() != name.lower()]
        if value is not None:
            # set() rejects CR/LF (header injection); the name must be a token.
            custom = CustomHeader(_token(name), "").set(value)
            pairs.append((custom.header_name, custom.header_value))
    return pairs


def _split_nonce(pairs: list[tuple[str, str]]) -> tuple[str, tuple[str, ...]] | None:
    """Takes the nonce-bearing CSP out of ``pairs`` (it is built per response)."""
    for i, (name, value) in enumerate(pairs):
        if _PLACEHOLDER in value:
            del pairs[i]
            return name, tuple(value.split(_PLACEHOLDER))
    return None


def _token(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"per-route header name {name!r} is not an HTTP header name")
    return name


def cors_plan() -> Plan:
    """The CORS part (enforce mode): the app's Access-Control-* headers dropped, Vary merged."""
    return Plan({**dict.fromkeys(ACCESS_CONTROL_HEADERS, DROP), "vary": VARY}, vary=True)


# --- the per-response pass --------------------------------------------------------------
S = TypeVar("S", str, bytes)


class HeaderEditor(Generic[S]):
    """One plan compiled for one encoding (``str`` for WSGI, ``bytes`` for ASGI)."""

    __slots__ = (
        "cache_key",
        "comma",
        "csp",
        "csp_keys",
        "html_types",
        "keyed_tail",
        "known",
        "origin",
        "origin_suffix",
        "plain_tail",
        "rules",
        "star",
        "tail",
        "vary",
    )

    def __init__(self, plan: Plan, encode: type[S]) -> None:
        def enc(text: str) -> S:
            return text.encode("latin-1") if encode is bytes else text  # type: ignore[return-value,comparison-overlap]

        self.rules: dict[S, int] = {enc(k): v for k, v in plan.rules.items()}
        self.known: dict[S, int] = {}

        def name_of(text: str) -> S:  # ASGI header names are lower-case by convention
            return enc(text.lower()) if encode is bytes else enc(text)  # type: ignore[comparison-overlap]

        self.tail: tuple[tuple[S, S], ...] = tuple((name_of(n), enc(v)) for n, v in plan.tail)

        def keys(name: str) -> frozenset[S]:  # the app headers that leave it out
            return frozenset(enc(k) for k in (name.lower(), *plan.covers.get(name.lower(), ())))

        self.keyed_tail: tuple[tuple[frozenset[S], tuple[S, S]], ...] = tuple(
            (keys(n), (name_of(n), enc(v))) for n, v in plan.tail
        )
        self.csp: tuple[S, tuple[S, ...]] | None = None
        self.csp_keys: frozenset[S] = frozenset()
        if plan.nonce_csp is not None:
            name, parts = plan.nonce_csp
            self.csp = (name_of(name), tuple(enc(p) for p in parts))
            self.csp_keys = keys(name)
        self.cache_key: S = enc("cache-control")
        self.html_types: tuple[S, ...] = (enc("text/html"), enc("application/xhtml"))
        self.vary: tuple[S, S] | None = (name_of("Vary"), enc("Origin")) if plan.vary else None
        # What an app response with no governed header gets appended, as one list.
        plain_tail: list[tuple[S, S]] = [self.vary] if self.vary is not None else []
        plain_tail.extend(self.tail)
        self.plain_tail: list[tuple[S, S]] = plain_tail
        self.origin: S = enc("origin")
        self.star: S = enc("*")
        self.comma: S = enc(",")
        self.origin_suffix: S = enc(", Origin")

    def apply(
        self,
        headers: Iterable[tuple[S, S]],
        nonce: S | None = None,
        extra: list[tuple[S, S]] | None = None,
    ) -> list[tuple[S, S]]:
        """The response's headers: the app's, filtered by the rules, then Bastion's."""
        known = self.known
        if not isinstance(headers, list):
            headers = list(headers)
        for item in headers:
            rule = known.get(item[0])
            if rule is None:
                rule = self._learn(item[0])
            if rule:
                break
        else:  # the common case: the app set nothing Bastion governs
            out = headers + self.plain_tail
            if nonce is not None and self.csp is not None:
                out.append((self.csp[0], nonce.join(self.csp[1])))
            if extra:
                out += extra
            return out
        return self._merge(headers, nonce, extra)

    def _merge(
        self, headers: list[tuple[S, S]], nonce: S | None, extra: list[tuple[S, S]] | None
    ) -> list[tuple[S, S]]:
        rules = self.rules
        out: list[tuple[S, S]] = []
        seen: set[S] | None = None  # app-wins headers the app did set
        html = True  # a response without Content-Type is treated as a document
        cache_at: list[int] | None = None
        vary_at = -1
        vary_ok = False
        for item in headers:
            key = item[0].lower()
            rule = rules.get(key)
            if rule is None:
                out.append(item)
            elif rule == APP:
                out.append(item)
                if seen is None:
                    seen = {key}
                else:
                    seen.add(key)
            elif rule == CTYPE:
                out.append(item)
                html = item[1].lower().startswith(self.html_types)
            elif rule == VARY:
                out.append(item)
                if vary_at < 0:
                    vary_at = len(out) - 1
                vary_ok = vary_ok or self._names_origin(item[1])
            elif rule == CACHE:
                if cache_at is None:
                    cache_at = []
                cache_at.append(len(out))
                out.append(item)
            # DROP: the app's value goes
        if cache_at is not None:
            if html:
                for i in reversed(cache_at):
                    del out[i]
                vary_at -= sum(1 for i in cache_at if i < vary_at)
            else:
                seen = {self.cache_key} if seen is None else seen | {self.cache_key}
        if self.vary is not None and not vary_ok:
            if vary_at < 0:
                out.append(self.vary)
            else:
                name, value = out[vary_at][0], out[vary_at][1]
                out[vary_at] = (name, value + self.origin_suffix)
        if seen is None:
            out.extend(self.tail)
        else:
            out.extend(pair for keys, pair in self.keyed_tail if seen.isdisjoint(keys))
        if (
            nonce is not None
            and self.csp is not None
            and (seen is None or seen.isdisjoint(self.csp_keys))
        ):
            out.append((self.csp[0], nonce.join(self.csp[1])))
        if extra:
            out.extend(extra)
        return out

    def _learn(self, name: S) -> int:
        """The rule for a header name as the app spelled it (0: not governed), cached so
        the per-response pass neither lower-cases nor allocates for names seen before.
        The cache is bounded: past the bound, names are judged without being kept."""
        rule = self.rules.get(name.lower(), 0)
        if len(self.known) < _KNOWN_NAMES_MAX:
            self.known[name] = rule
        return rule

    def _names_origin(self, value: S) -> bool:
        """The app's Vary already covers Origin (``Origin`` or ``*`` among its tokens)."""
        for part in value.split(self.comma):
            token = part.strip().lower()
            if token == self.origin or token == self.star:
                return True
        return False
