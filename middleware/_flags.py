"""Parsers for ``BASTION_*`` environment flags.

Each parser turns the raw string of one variable into a typed value or raises
:class:`FlagError` naming the variable, the value it got and what it allows.
They run once at startup, so they favour clear messages over speed.
"""

from __future__ import annotations

import ipaddress
import math
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


def seconds(*, minimum: float = 0.0, allow_zero: bool = False) -> Parser:
    """A positive, finite number of seconds."""

    def parse(name: str, raw: str) -> float:
        allowed = f"a finite number of seconds {'>=' if allow_zero else '>'} {minimum:g}"
        try:
            value = float(raw.strip())
        except ValueError:
            raise FlagError(name, raw, allowed) from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not allow_zero):
            raise FlagError(name, raw, allowed)
        return value

    return parse


def optional_seconds(name: str, raw: str) -> float | None:
    """Seconds, or empty for "derive it from another setting"."""
    if not raw.strip():
        return None
    return float(seconds()(name, raw))


def integer(*, minimum: int = 0) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise FlagError(name, raw, f"a whole number >= {minimum}") from None
        if value < minimum:
            raise FlagError(name, raw, f"a whole number >= {minimum}")
        return value

    return parse


def optional_bytes(name: str, raw: str) -> int | None:
    """A byte count such as ``10737418240``, ``10GB`` or ``1TiB``; empty for none."""
    text = raw.strip().replace("_", "")
    if not text:
        return None
    match = re.fullmatch(r"(\d+)\s*([KMGTP]?)(i?)B?", text, re.IGNORECASE)
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


def networks(name: str, raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    found = []
    for item in comma_list(name, raw):
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise FlagError(
                name, raw, "a comma list of IP addresses or CIDR networks", f"{item!r}"
            ) from None
    return tuple(found)


_ORIGIN = re.compile(
    r"(?P<scheme>https?)://(?P<wild>\*\.)?(?P<host>[a-z0-9]([a-z0-9-]*[a-z0-9])?"
    r"(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::(?P<port>\d{1,5}))?"
)


def origins(name: str, raw: str) -> tuple[str, ...]:
    """CORS origins: exact ``scheme://host[:port]``, ``https://*.example.com`` patterns,
    ``null`` (only when listed) or ``*``. Normalised to lower case, no trailing slash."""
    found = []
    for item in comma_list(name, raw):
        value = item.lower().rstrip("/")
        if value in ("*", "null") or _ORIGIN.fullmatch(value):
            found.append(value)
            continue
        raise FlagError(
            name,
            raw,
            "a comma list of origins (https://app.example.com[:port]), "
            "wildcard-subdomain patterns (https://*.example.com), null, or *",
            f"{item!r} is not an origin",
        )
    return tuple(found)


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


def path_list(name: str, raw: str) -> tuple[str, ...]:
    found = comma_list(name, raw)
    for item in found:
        if not item.startswith("/"):
            raise FlagError(name, raw, "a comma list of URL paths starting with /", f"{item!r}")
    return found


def url_path(name: str, raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith("/"):
        raise FlagError(name, raw, "a URL path starting with /, or empty")
    return value


def header_winners(name: str, raw: str) -> dict[str, str]:
    """``header=app|bastion`` pairs: who wins when the app sets a header Bastion sends."""
    found: dict[str, str] = {}
    for item in comma_list(name, raw):
        header, sep, winner = (part.strip().lower() for part in item.partition("="))
        if not sep or winner not in ("app", "bastion") or not re.fullmatch(r"[a-z0-9-]+", header):
            raise FlagError(name, raw, "a comma list of header=app|bastion", f"{item!r}")
        found[header] = winner
    return found
