"""CORS settings (:class:`CORSSettings`) and decisions, compiled once from them.

Kept apart from the middleware classes so that the WSGI and ASGI layers (and the
security-headers layer, which runs CORS in its own pass when it directly wraps a
CORS layer) share one implementation. The rules follow the OWASP HTML5 Security
Cheat Sheet:

* an origin is allowed only by exact comparison with the allow-list, or by an
  opt-in ``https://*.example.com`` pattern compiled to a *full-match* regex over
  DNS labels (``https://a.example.com.evil.net`` never matches, unlike flask-cors's
  ``re.match``);
* comparison is byte-for-byte with the browser's serialisation of the origin
  (lower-case scheme and host, no default port, no path); anything else, including
  a mixed-case or over-long value, is refused, so a refused value is never echoed;
* ``null`` is allowed only when listed; ``*`` with credentials is refused by the
  settings at startup;
* a refused preflight gets 403 with no CORS headers; an allowed one gets 204;
* ``Access-Control-Allow-Private-Network`` is never sent;
* when the guard enforces, the app's own ``Access-Control-*`` response headers are
  dropped (one policy, never two conflicting ``Access-Control-Allow-Origin``), and
  ``Vary: Origin`` is merged into every response so a shared cache cannot serve one
  origin's answer to another.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from opentelemetry import metrics

from bastion.middleware import _flags
from bastion.middleware._flags import FlagError, Mode
from bastion.middleware._settings_group import SettingsGroup, flag

__all__ = ["ACCESS_CONTROL_HEADERS", "CORSPolicy", "CORSSettings", "Preflight"]

logger = logging.getLogger("bastion.cors")

# Response headers the CORS guard governs (dropped from the app's response).
ACCESS_CONTROL_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
    "access-control-allow-private-network",
)
# Request headers a browser may send without asking (Fetch "CORS-safelisted").
_SAFELISTED = frozenset({"accept", "accept-language", "content-language"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
# scheme://host[:port] is at most ~270 characters for a valid DNS name; refuse longer
# values before any regex runs.
_MAX_ORIGIN = 300
_LABEL = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
_OBSERVED_KEYS_MAX = 1024


@dataclass(frozen=True)
class CORSSettings(SettingsGroup):
    """``BASTION_CORS*``: which origins' pages may call the service, and how."""

    title = "CORS"

    cors: Mode = flag(
        "BASTION_CORS", _flags.parse_mode, Mode.ENFORCE, "CORS guard (active only with origins)."
    )
    cors_origins: tuple[str, ...] = flag(
        "BASTION_CORS_ORIGINS",
        _flags.origins,
        (),
        "Allowed origins, comma list; `https://*.example.com` opts in to subdomains. "
        "Empty: CORS off.",
        recheck=True,
    )
    cors_credentials: bool = flag(
        "BASTION_CORS_CREDENTIALS",
        _flags.parse_bool,
        False,
        "Send Access-Control-Allow-Credentials.",
    )
    cors_methods: tuple[str, ...] = flag(
        "BASTION_CORS_METHODS",
        _flags.methods,
        ("GET", "HEAD", "POST"),
        "Methods a preflight may ask for.",
    )
    cors_allow_headers: tuple[str, ...] = flag(
        "BASTION_CORS_ALLOW_HEADERS",
        _flags.header_names,
        ("authorization", "content-type"),
        "Request headers a preflight may ask for.",
    )
    cors_expose_headers: tuple[str, ...] = flag(
        "BASTION_CORS_EXPOSE_HEADERS",
        _flags.header_names,
        (),
        "Response headers exposed to the calling page.",
    )
    cors_max_age: int = flag(
        "BASTION_CORS_MAX_AGE",
        _flags.integer(maximum=86400),
        600,
        "Seconds a browser may cache a preflight (browsers cap it: Firefox at 86400, "
        "Chromium at 7200).",
    )

    def check(self) -> list[FlagError]:
        errors = super().check()
        if not self.cors_credentials:
            return errors
        listed = ",".join(self.cors_origins)
        if "*" in self.cors_origins:
            errors.append(
                FlagError(
                    "BASTION_CORS_ORIGINS",
                    listed,
                    "explicit origins when BASTION_CORS_CREDENTIALS is true",
                    "'*' with credentials would let any site read authenticated responses",
                )
            )
        for origin in self.cors_origins:
            host = _flags.wildcard_base(origin)
            if host is not None and not _flags.is_registrable(host, private=True):
                errors.append(
                    FlagError(
                        "BASTION_CORS_ORIGINS",
                        listed,
                        "wildcards below a domain one owner controls when "
                        "BASTION_CORS_CREDENTIALS is true",
                        f"{origin!r} would send credentials to every site registered "
                        f"under the public suffix {host!r}",
                    )
                )
        return errors

    def warnings(self) -> list[str]:
        found = super().warnings()
        if self.is_set("BASTION_CORS") and self.cors.active and not self.cors_origins:
            found.append(
                f"BASTION_CORS={self.cors.value} but BASTION_CORS_ORIGINS is empty: the "
                "CORS guard is off (no origin is allowed and the app's own CORS headers "
                "pass through); list the origins of the pages that call this service"
            )
        return found


def _pattern(origin: str) -> re.Pattern[str]:
    """``https://*.example.com[:port]`` → a full-match regex: one or more DNS labels
    in place of ``*``, then exactly the rest (dots escaped, port exact or absent)."""
    scheme, _, rest = origin.partition("://*.")
    host_limit = r"(?=[a-z0-9.-]{1,253}(?::[0-9]{1,5})?\Z)"  # a DNS name is <= 253 chars
    return re.compile(rf"{re.escape(scheme)}://{host_limit}(?:{_LABEL}\.)+{re.escape(rest)}")


class Preflight:
    """A preflight answer: status line, the grant (``Access-Control-*``, empty when
    refused), the other headers and the body."""

    __slots__ = ("allowed", "body", "grant", "headers", "reason", "status")

    def __init__(self, grant: list[tuple[str, str]], reason: str = "") -> None:
        self.allowed = not reason
        self.reason = reason
        self.grant = grant
        self.status = "204 No Content" if self.allowed else "403 Forbidden"
        self.body = f"CORS preflight refused: {reason}\n".encode() if reason else b""
        self.headers = [("Vary", "Origin")]
        if reason:
            self.headers += [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(self.body))),
            ]


class CORSPolicy:
    """The allow-list and every response header value, computed once."""

    def __init__(self, settings: CORSSettings, *, exempt_path: str | None = None) -> None:
        self.mode = settings.cors
        self.enforcing = self.mode.enforcing
        self.path_exempt = exempt_path or None
        origins = settings.cors_origins
        self.any_origin = "*" in origins
        self.exact = frozenset(o for o in origins if "*" not in o)
        self.patterns = tuple(_pattern(o) for o in origins if "://*." in o)
        self.credentials = settings.cors_credentials
        self.methods = frozenset(settings.cors_methods)
        self.any_header = "*" in settings.cors_allow_headers
        self.allow_headers = frozenset(settings.cors_allow_headers) | _SAFELISTED

        static: list[tuple[str, str]] = []
        if self.credentials:
            static.append(("Access-Control-Allow-Credentials", "true"))
        if settings.cors_expose_headers:
            static.append(
                ("Access-Control-Expose-Headers", ", ".join(settings.cors_expose_headers))
            )
        self.actual_static = tuple(static)
        self.actual_static_bytes = tuple((n.lower().encode(), v.encode()) for n, v in static)
        self.preflight_static = (
            ("Access-Control-Allow-Methods", ", ".join(settings.cors_methods)),
            ("Access-Control-Max-Age", str(settings.cors_max_age)),
            *([("Access-Control-Allow-Credentials", "true")] if self.credentials else []),
        )
        # Grants for the exact origins, prebuilt: the common allowed request is one
        # dict lookup (callers must not mutate them).
        self.grants: dict[str, list[tuple[str, str]]] = {}
        self.grants_bytes: dict[bytes, list[tuple[bytes, bytes]]] = {}
        for origin in self.exact:
            value = "*" if self.any_origin else origin
            grant = [("Access-Control-Allow-Origin", value), *static]
            self.grants[origin] = grant
            self.grants_bytes[origin.encode()] = [
                (n.lower().encode(), v.encode()) for n, v in grant
            ]
        # An allow-headers '*' is answered with the asked-for names (each validated as a
        # header token), which browsers honour with or without credentials.
        self.listed_headers = ", ".join(h for h in settings.cors_allow_headers if h != "*")
        # '*' with credentials is refused by the settings, so '*' is always the literal.
        self.star_origin = self.any_origin
        self.refused_counter = metrics.get_meter("bastion").create_counter(
            "bastion.cors.refused",
            unit="{request}",
            description="Cross-origin requests and preflights refused (or that would be).",
        )
        self.refused_attributes = {"bastion.mode": self.mode.value}
        self._observed: set[tuple[str, str]] = set()

    # --- origin matching ------------------------------------------------------------
    def allows(self, origin: str) -> bool:
        if origin in self.exact:
            return True
        if self.any_origin:  # answered with the literal '*', never an echo
            return origin != "null"
        if self.patterns and len(origin) <= _MAX_ORIGIN:
            return any(p.fullmatch(origin) for p in self.patterns)
        return False

    def allow_origin_value(self, origin: str) -> str:
        return "*" if self.star_origin else origin

    # --- actual (non-preflight) requests ----------------------------------------------
    def actual_pairs(
        self, origin: str, host: str | None, path: str
    ) -> list[tuple[str, str]] | None:
        """Headers to add for an allowed origin; ``None`` (and a count) when refused."""
        grant = self.grants.get(origin)
        if grant is not None:
            return grant
        if self.allows(origin):
            return [
                ("Access-Control-Allow-Origin", self.allow_origin_value(origin)),
                *self.actual_static,
            ]
        self.refused(origin, host, path, "origin not allowed")
        return None

    def actual_pairs_bytes(
        self, origin: bytes, host: bytes | None, path: str
    ) -> list[tuple[bytes, bytes]] | None:
        grant = self.grants_bytes.get(origin)
        if grant is not None:
            return grant
        text = origin.decode("latin-1")
        if self.allows(text):
            value = b"*" if self.star_origin else origin
            return [(b"access-control-allow-origin", value), *self.actual_static_bytes]
        host_text = host.decode("latin-1") if host is not None else None
        self.refused(text, host_text, path, "origin not allowed")
        return None

    # --- preflight ----------------------------------------------------------------------
    def preflight(
        self, origin: str, method: str, request_headers: str | None, path: str
    ) -> Preflight:
        """Judge a preflight (``OPTIONS`` with ``Access-Control-Request-Method``)."""
        if not self.allows(origin):
            return self._refuse(origin, path, "origin not allowed")
        if method not in self.methods:
            return self._refuse(origin, path, "method not allowed")
        asked = _header_list(request_headers)
        if asked is None:
            return self._refuse(origin, path, "malformed Access-Control-Request-Headers")
        if not self.any_header and not all(h in self.allow_headers for h in asked):
            return self._refuse(origin, path, "header not allowed")
        allow_headers = ", ".join(asked) if self.any_header else self.listed_headers
        grant = [
            ("Access-Control-Allow-Origin", self.allow_origin_value(origin)),
            *self.preflight_static,
        ]
        if allow_headers:
            grant.insert(2, ("Access-Control-Allow-Headers", allow_headers))
        return Preflight(grant)

    def preflight_bytes(
        self, origin: bytes, method: bytes, request_headers: bytes | None, path: str
    ) -> Preflight:
        return self.preflight(
            origin.decode("latin-1"),
            method.decode("latin-1"),
            request_headers.decode("latin-1") if request_headers is not None else None,
            path,
        )

    def _refuse(self, origin: str, path: str, reason: str) -> Preflight:
        self.refused(origin, None, path, reason)
        return Preflight([], reason)

    # --- recording ----------------------------------------------------------------------
    def refused(self, origin: str, host: str | None, path: str, reason: str) -> None:
        """Count a refusal; log the first one per (path, reason). Same-origin requests
        (browsers send Origin on same-origin POSTs too) are not refusals."""
        if host is not None and origin.partition("://")[2] == host:
            return
        self.refused_counter.add(1, self.refused_attributes)
        key = (path, reason)
        if key in self._observed or len(self._observed) >= _OBSERVED_KEYS_MAX:
            return
        self._observed.add(key)
        verb = "refused" if self.mode is Mode.ENFORCE else "would refuse"
        # %r: the origin is attacker-controlled; repr keeps control characters out of logs.
        logger.info("CORS %s %s on %.200r (origin %.100r)", verb, reason, path, origin)


def _header_list(value: str | None) -> list[str] | None:
    """Access-Control-Request-Headers as lower-case names; ``None`` if malformed."""
    if not value:
        return []
    names = [item.strip().lower() for item in value.split(",")]
    names = [n for n in names if n]
    if len(names) > 64 or not all(_TOKEN.fullmatch(n) for n in names):
        return None
    return names
