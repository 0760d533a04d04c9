"""Parsers for ``BASTION_*`` environment flags.

Each parser turns the raw string of one variable into a typed value or raises
:class:`FlagError` naming the variable, the value it got and what it allows.
They run once at startup, so they favour clear messages over speed.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    """How a guard behaves: ``off`` does nothing, ``observe`` records what it
    would do and changes nothing, ``enforce`` acts."""

    OFF = "off"
    OBSERVE = "observe"
    ENFORCE = "enforce"

    @property
    def active(self) -> bool:
        """True unless the guard is off."""
        return self is not Mode.OFF

    @property
    def enforcing(self) -> bool:
        return self is Mode.ENFORCE


class FlagError(ValueError):
    """One invalid setting: the variable, the value it held and what it allows."""

    def __init__(self, name: str, value: object, allowed: str, reason: str = "") -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"{name}={value!r} is invalid{detail}; allowed: {allowed}")


Parser = Callable[[str, str], Any]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_mode(name: str, raw: str) -> Mode:
    try:
        return Mode(raw.strip().lower())
    except ValueError:
        raise FlagError(name, raw, "off | observe | enforce") from None


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FlagError(name, raw, "true | false (also 1/0, yes/no, on/off)")


def choice(*allowed: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise FlagError(name, raw, " | ".join(repr(a) if a == "" else a for a in allowed))
        return value

    return parse


# Numbers are written in ASCII digits: Python's int() and float() also read other
# scripts' digits ("١٢٣" as 123) and underscores, which no one means in a setting.
_INTEGER = re.compile(r"[-+]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
#: Shortest and longest duration a seconds setting may hold: below a millisecond no
#: timer or clock here can honour it; beyond a day it is no longer a timeout.
SECONDS_LEAST = 0.001
SECONDS_MOST = 86400.0


def seconds(*, allow_zero: bool = False) -> Parser:
    """A finite number of seconds from :data:`SECONDS_LEAST` to :data:`SECONDS_MOST`
    (or 0 with ``allow_zero``)."""
    allowed = f"a finite number of seconds from {SECONDS_LEAST:g} to {SECONDS_MOST:g}"
    if allow_zero:
        allowed += ", or 0"

    def parse(name: str, raw: str) -> float:
        text = raw.strip()
        if not _DECIMAL.fullmatch(text):
            raise FlagError(name, raw, allowed)
        value = float(text)
        if value == 0 and allow_zero:
            return 0.0
        if not SECONDS_LEAST <= value <= SECONDS_MOST:
            raise FlagError(name, raw, allowed)
        return value

    return parse


def optional_seconds(name: str, raw: str) -> float | None:
    """Seconds, or empty for "derive it from another setting"."""
    if not raw.strip():
        return None
    return float(seconds()(name, raw))


def integer(*, minimum: int = 0, maximum: int | None = None) -> Parser:
    allowed = f"a whole number >= {minimum} in ASCII digits"
    if maximum is not None:
        allowed = f"a whole number from {minimum} to {maximum} in ASCII digits"

    def parse(name: str, raw: str) -> int:
        text = raw.strip()
        if not _INTEGER.fullmatch(text) or len(text) > 30:
            raise FlagError(name, raw, allowed)
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise FlagError(name, raw, allowed)
        return value

    return parse


def optional_bytes(name: str, raw: str) -> int | None:
    """A byte count such as ``10737418240``, ``10GB`` or ``1TiB``; empty for none."""
    text = raw.strip().replace("_", "")
    if not text:
        return None
    match = re.fullmatch(r"([0-9]{1,30})\s*([KMGTP]?)(i?)B?", text, re.IGNORECASE | re.ASCII)
    if not match:
        raise FlagError(name, raw, "a byte count such as 10737418240, 10GB or 1TiB, or empty")
    number, prefix, binary = match.groups()
    base = 1024 if binary else 1000
    power = " KMGTP".index(prefix.upper() or " ")
    return int(number) * int(base**power)


def text(name: str, raw: str) -> str:
    return raw.strip()


def comma_list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


_HOST = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
_ORIGIN = re.compile(
    rf"(?P<scheme>https?)://(?P<wild>\*\.)?(?P<host>{_HOST}|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?",
    re.ASCII,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGINS_ALLOWED = (
    "a comma list of origins as browsers send them (https://app.example.com[:port], "
    "lower case, no default port, port 1-65535), wildcard-subdomain patterns below a "
    "registrable domain (https://*.example.com), null, or *"
)


def origins(name: str, raw: str) -> tuple[str, ...]:
    """CORS origins: exact ``scheme://host[:port]``, ``https://*.example.com`` patterns,
    ``null`` (only when listed) or ``*``. Case and a trailing slash are normalised;
    anything a browser would never send (a default port, a non-canonical IP address) and
    a wildcard at or above a public suffix are refused."""
    found = []
    for item in comma_list(name, raw):
        value = item.lower().rstrip("/")
        problem = origin_problem(value)
        if problem:
            raise FlagError(name, raw, _ORIGINS_ALLOWED, f"{item!r} {problem}")
        found.append(value)
    return tuple(found)


def connect_sources(name: str, raw: str) -> tuple[str, ...]:
    """CSP ``connect-src`` sources: origins written as for :func:`origins`
    (``https://*.example.com`` included), never ``*`` or ``null``."""
    found = origins(name, raw)
    for value in found:
        if value in ("*", "null"):
            raise FlagError(
                name,
                raw,
                "a comma list of origins (https://api.example.com[:port], https://*.example.com)",
                f"{value!r} is not an origin a page may connect to",
            )
    return found


def origin_problem(value: str) -> str:
    """Why ``value`` (lower case) cannot be an allowed origin; ``""`` if it can."""
    if value in ("*", "null"):
        return ""
    match = _ORIGIN.fullmatch(value)
    if match is None:
        odd = next((c for c in value if not c.isascii()), None)
        return f"contains the non-ASCII character {odd!r}" if odd else "is not an origin"
    scheme, wild, host, port = match.group("scheme", "wild", "host", "port")
    if port is not None:
        number = int(port)
        if not 0 < number <= 65535:
            return f"has port {port}, outside 1-65535"
        if number == _DEFAULT_PORTS[scheme] or port != str(number):
            shown = "" if number == _DEFAULT_PORTS[scheme] else f":{number}"
            return (
                f"is not how a browser writes it (it sends {scheme}://{wild or ''}{host}{shown}),"
                " so it could never match"
            )
    literal = _ip_literal(host)
    if literal is not None:
        if wild:
            return "puts a wildcard on an IP address"
        if not literal:
            return "has a malformed IP address"
        if literal != host:
            return f"is not how a browser writes it ({scheme}://{literal}), so it could never match"
    if wild and not is_registrable(host):
        return (
            f"puts a wildcard on {host!r}, a public suffix (anyone can register a name "
            "below it): name a registrable domain, e.g. https://*.example.com"
        )
    return ""


def wildcard_base(origin: str) -> str | None:
    """The host below which a ``https://*.example.com`` pattern matches, else ``None``."""
    match = _ORIGIN.fullmatch(origin)
    return match.group("host") if match is not None and match.group("wild") else None


def _ip_literal(host: str) -> str | None:
    """The canonical form of an IP host (``[::1]``, ``10.0.0.1``), ``""`` for a malformed
    one, ``None`` for a name. A host whose last label is numeric is an IPv4 address to
    browsers (or invalid)."""
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1])}]"
        except ValueError:
            return ""
    if host.rpartition(".")[2].isdigit():
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            return ""
    return None


def is_registrable(host: str, *, private: bool = False) -> bool:
    """``host`` is a registrable domain or below one (``example.com``, ``a.example.co.uk``),
    not a public suffix (``com``, ``co.uk``) by the Public Suffix List bundled with
    ``publicsuffixlist``: its ICANN section, or with ``private`` its private section too
    (``github.io``, ``run.app``, where anyone can register a name)."""
    return _suffix_list(private).privatesuffix(host) is not None


@functools.cache
def _suffix_list(private: bool) -> Any:
    from publicsuffixlist import PublicSuffixList  # loaded only for wildcard origins

    return PublicSuffixList(only_icann=not private)


def header_names(name: str, raw: str) -> tuple[str, ...]:
    found = []
    for item in comma_list(name, raw):
        if item != "*" and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", item):
            raise FlagError(name, raw, "a comma list of HTTP header names", f"{item!r}")
        found.append(item.lower())
    return tuple(found)


def methods(name: str, raw: str) -> tuple[str, ...]:
    found = []
    for item in comma_list(name, raw):
        if not re.fullmatch(r"[A-Za-z]+", item):
            raise FlagError(name, raw, "a comma list of HTTP methods", f"{item!r}")
        found.append(item.upper())
    return tuple(found)


def partition_map(name: str, raw: str) -> dict[str, str]:
    """``project.dataset.table=column`` pairs, comma separated."""
    found: dict[str, str] = {}
    for item in comma_list(name, raw):
        table, sep, column = item.partition("=")
        table, column = table.strip().strip("`"), column.strip()
        if not sep or table.count(".") != 2 or not column or not column.isidentifier():
            raise FlagError(
                name,
                raw,
                "comma list of project.dataset.table=column (column may be _PARTITIONTIME)",
                f"{item!r}",
            )
        found[table.lower()] = column
    return found


def route_map(*values: str) -> Parser:
    """``PATTERN=VALUE`` pairs, comma separated: each pattern a route pattern of
    :class:`bastion.middleware.routes.RoutePatterns`, each value one of ``values``, each
    pattern once."""
    from bastion.middleware.routes import PATTERN_FORMS, pattern_problem

    allowed = f"a comma list of PATTERN={'|'.join(values)}, PATTERN {PATTERN_FORMS}"

    def parse(name: str, raw: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for item in comma_list(name, raw):
            pattern, sep, value = (part.strip() for part in item.rpartition("="))
            if not sep or not pattern:
                raise FlagError(name, raw, allowed, f"{item!r} is not PATTERN=VALUE")
            if value not in values:
                raise FlagError(name, raw, allowed, f"{item!r}: unknown value {value!r}")
            problem = pattern_problem(pattern)
            if problem:
                raise FlagError(name, raw, allowed, problem)
            if pattern in found:
                raise FlagError(name, raw, allowed, f"{pattern!r} is given twice")
            found[pattern] = value
        return found

    return parse


# URL paths and report URIs end up in response headers (CSP, Reporting-Endpoints) and
# are compared with the decoded request path: ASCII only, and none of the characters
# that end a CSP directive (';'), a policy (','), a structured-field string ('"', '\\'),
# or a value (space). In a path a '%' could never match the decoded PATH_INFO.
_PATH_CHARS = r"[A-Za-z0-9\-._~!$&'()*+=:@/]"
_PATH = re.compile(rf"/{_PATH_CHARS}*", re.ASCII)
_URI_CHARS = rf"(?:{_PATH_CHARS}|%[0-9A-Fa-f]{{2}})"
_URI = re.compile(
    rf"(?:https?://{_HOST}(?::[0-9]{{1,5}})?)?/{_URI_CHARS}*(?:\?(?:{_URI_CHARS}|\?)*)?",
    re.ASCII | re.IGNORECASE,
)
_PATH_ALLOWED = (
    "a URL path starting with / in ASCII letters, digits and -._~!$&'()*+=:@/ "
    "(no spaces, ';', ',', '\"', '%' or non-ASCII characters)"
)
_URI_ALLOWED = (
    "a URL path (/csp-reports) or an http(s) URL, in ASCII letters, digits, "
    "-._~!$&'()*+=:@/? and %XX escapes (no spaces, ';', ',', '\"' or non-ASCII "
    "characters), or empty"
)


def _first_bad(value: str, allowed: re.Pattern[str]) -> str:
    """Why ``value`` does not match: the first character that cannot appear."""
    for char in value:
        if not char.isascii():
            return f"contains the non-ASCII character {char!r}"
        if not re.fullmatch(allowed.pattern, char, re.ASCII | re.IGNORECASE):
            return f"contains {char!r}"
    return "is not of that form"


def path_list(name: str, raw: str) -> tuple[str, ...]:
    found = comma_list(name, raw)
    for item in found:
        if not _PATH.fullmatch(item):
            why = _first_bad(item, re.compile(_PATH_CHARS)) if item.startswith("/") else ""
            raise FlagError(
                name, raw, f"a comma list of {_PATH_ALLOWED}", f"{item!r} {why or 'is no path'}"
            )
    return found


def url_path(name: str, raw: str) -> str:
    value = raw.strip()
    if value and not _PATH.fullmatch(value):
        why = _first_bad(value, re.compile(_PATH_CHARS)) if value.startswith("/") else ""
        raise FlagError(name, raw, f"{_PATH_ALLOWED}, or empty", why or "it is no path")
    return value


def report_uri(name: str, raw: str) -> str:
    """Where browsers post CSP reports: a path or an absolute http(s) URL, header-safe."""
    value = raw.strip()
    if value and not _URI.fullmatch(value):
        why = _first_bad(value, re.compile(_URI_CHARS.replace("%[0-9A-Fa-f]{2}", "[%?]")))
        raise FlagError(name, raw, _URI_ALLOWED, why)
    return value


def header_winners(name: str, raw: str) -> dict[str, str]:
    """``header=app|bastion`` pairs: who wins when the app sets a header Bastion sends.
    Each must name a header Bastion governs (a rule for any other has no effect), once."""
    from bastion.middleware._header_names import MERGEABLE

    allowed = f"a comma list of header=app|bastion, header one of {', '.join(sorted(MERGEABLE))}"
    found: dict[str, str] = {}
    for item in comma_list(name, raw):
        header, sep, winner = (part.strip().lower() for part in item.partition("="))
        if not sep or winner not in ("app", "bastion"):
            raise FlagError(name, raw, allowed, f"{item!r}")
        if header not in MERGEABLE:
            raise FlagError(
                name, raw, allowed, f"{item!r}: Bastion does not send {header!r}, so no effect"
            )
        if found.get(header, winner) != winner:
            raise FlagError(name, raw, allowed, f"{header!r} is given two winners")
        found[header] = winner
    return found


UPSTREAM_TIMEOUTS_ALLOWED = (
    "a comma list of host[:port]=SECONDS: host a DNS name, an IPv4 address or an [IPv6] "
    "address, or *.example.com for every subdomain of example.com; port 1-65535; "
    f"SECONDS a finite number from {SECONDS_LEAST:g} to {SECONDS_MOST:g}"
)
_UPSTREAM = re.compile(
    rf"(?P<wild>\*\.)?(?P<host>{_HOST}|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?", re.ASCII
)


def upstream_timeouts(name: str, raw: str) -> dict[str, float]:
    """Per-upstream read timeouts: ``host[:port]=SECONDS`` pairs, comma separated, keyed by
    the pattern in canonical form (lower case, IPv6 in brackets). ``host`` matches every
    port, ``host:443`` only that one. Each pattern at most once."""
    found: dict[str, float] = {}
    for item in comma_list(name, raw):
        pattern, sep, value = (part.strip() for part in item.partition("="))
        pattern = pattern.lower().rstrip(".")
        match = _UPSTREAM.fullmatch(pattern)
        if not sep or match is None:
            raise FlagError(name, raw, UPSTREAM_TIMEOUTS_ALLOWED, f"{item!r}")
        wild, host, port = match.group("wild", "host", "port")
        literal = _ip_literal(host)
        if literal == "" or (wild and literal is not None):
            raise FlagError(
                name, raw, UPSTREAM_TIMEOUTS_ALLOWED, f"{item!r}: {host!r} is no host to match"
            )
        if port is not None and not 0 < int(port) <= 65535:
            raise FlagError(name, raw, UPSTREAM_TIMEOUTS_ALLOWED, f"{item!r}: port {port}")
        try:
            timeout = float(seconds()(name, value))
        except FlagError:
            raise FlagError(
                name, raw, UPSTREAM_TIMEOUTS_ALLOWED, f"{item!r}: {value!r} is no timeout"
            ) from None
        key = f"{wild or ''}{literal or host}" + (f":{int(port)}" if port is not None else "")
        if key in found:
            raise FlagError(name, raw, UPSTREAM_TIMEOUTS_ALLOWED, f"{key!r} is given twice")
        found[key] = timeout
    return found
