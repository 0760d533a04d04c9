"""The cookies a browser-grade cookie jar keeps from ``Set-Cookie`` lines.

The Observatory grades the cookies its retriever's jar (tough-cookie 5, filled by
http-cookie-agent with ``ignoreError``) holds after the scan, not the raw lines. This
module stores cookies by the same rules, RFC 6265bis sections 5.2-5.4 as tough-cookie
implements them:

* a line is ``name=value`` then ``;``-separated attributes; no ``=`` (or a name made
  empty) or a control character in the name or value drops the line;
* ``Domain`` must domain-match the host and must not be a public suffix (the Public
  Suffix List, private section included; special-use TLDs such as ``.test`` allowed);
* ``__Secure-`` needs ``Secure``; ``__Host-`` needs ``Secure``, no ``Domain`` and
  ``Path=/``;
* the last ``SameSite`` attribute wins, and a value other than Strict, Lax or None
  unsets it;
* a cookie replaces a stored one with the same name, domain and path only (so two
  paths are two cookies); expiry is not applied (the jar is read whole).

Python's own ``http.cookiejar`` implements the Netscape and RFC 2965 rules (no
SameSite, no prefixes, no public suffixes) and ``http.cookies`` parses request
``Cookie`` headers, so neither grades what the Observatory grades; the Public Suffix
List comes from :mod:`publicsuffixlist`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from bastion.cli._node import trim

__all__ = ["Cookie", "jar"]

_CONTROL = re.compile("[\x00-\x1f]")
_SPECIAL_USE_TLDS = frozenset({"local", "example", "invalid", "localhost", "test"})


@dataclass
class Cookie:
    name: str
    value: str
    domain: str | None = None
    path: str | None = None
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None  # "strict", "lax" or "none"
    host_only: bool = False


def parse(line: str) -> Cookie | None:
    """One ``Set-Cookie`` value, or None when the jar would drop it at parsing."""
    line = trim(line)
    if not line:
        return None
    pair, separator, unparsed = line.partition(";")
    for terminator in ("\n", "\r", "\0"):
        pair = pair.split(terminator, 1)[0]
    equals = pair.find("=")
    if equals <= 0:
        return None
    name, value = trim(pair[:equals]), trim(pair[equals + 1 :])
    if _CONTROL.search(name) or _CONTROL.search(value):
        return None
    cookie = Cookie(name, value)
    for attribute in trim(unparsed).split(";") if separator else ():
        attribute = trim(attribute)
        if not attribute:
            continue
        key, has_value, raw = attribute.partition("=")
        key = trim(key).lower()
        argument = trim(raw) if has_value else ""
        if key == "domain" and argument:
            domain = trim(argument).removeprefix(".")
            if domain:
                cookie.domain = domain.lower()
        elif key == "path":
            cookie.path = argument if argument.startswith("/") else None
        elif key == "secure":
            cookie.secure = True
        elif key == "httponly":
            cookie.http_only = True
        elif key == "samesite":
            lowered = argument.lower()
            cookie.same_site = lowered if lowered in ("strict", "lax", "none") else None
    return cookie


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list ships inside the package: no download


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _registrable(domain: str) -> str | None:
    """tough-cookie's ``getPublicSuffix`` (a misnomer: the registrable domain)."""
    labels = domain.split(".")
    if labels[-1] in _SPECIAL_USE_TLDS:
        if len(labels) > 1:
            return ".".join(labels[-2:])
        if labels[-1] in ("localhost", "invalid"):
            return labels[-1]
    if _is_ip(domain):
        return None
    return _public_suffixes().privatesuffix(domain)


def _domain_match(host: str, domain: str) -> bool:
    if host == domain:
        return True
    return host.endswith("." + domain) and not _is_ip(host)


def _default_path(path: str) -> str:
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rindex("/")]


def _store(cookie: Cookie, url: str) -> bool:
    """Fill in domain and path from ``url``; False when the jar rejects the cookie."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if cookie.domain:
        if _registrable(cookie.domain) is None and ":" not in cookie.domain:
            return False
        if not _domain_match(host, cookie.domain):
            return False
    else:
        cookie.host_only, cookie.domain = True, host
    if not cookie.path:
        cookie.path = _default_path(parts.path)
    if cookie.name.startswith("__Secure-") and not cookie.secure:
        return False
    return not cookie.name.startswith("__Host-") or (
        cookie.secure and cookie.host_only and cookie.path == "/"
    )


def jar(set_cookies: list[str], url: str) -> list[Cookie]:
    """The cookies kept after receiving ``set_cookies`` from ``url``, oldest first."""
    kept: dict[tuple[str | None, str | None, str], Cookie] = {}
    for line in set_cookies:
        cookie = parse(line)
        if cookie is not None and _store(cookie, url):
            kept[(cookie.domain, cookie.path, cookie.name)] = cookie
    return list(kept.values())
