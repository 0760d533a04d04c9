"""How the Observatory's Node.js runtime sees a response and a string, for the port.

The Observatory reads headers from the object Node's HTTP client builds and axios wraps:
:func:`node_headers` builds the same mapping from raw header lines. Its tests use a few
JavaScript string primitives whose edge cases differ from Python's (``trim`` strips a
different set of spaces, ``parseInt`` reads a leading number and ignores the rest):
:func:`trim` and :func:`parse_int` behave as those do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["JS_SPACE", "NodeHeaders", "node_headers", "parse_int", "trim"]

#: Headers Node's HTTP client keeps only the first line of (``matchKnownFields`` in
#: ``lib/_http_incoming.js``); every other repeated header is joined with ", ",
#: ``Cookie`` with "; ", and ``Set-Cookie`` stays a list.
_FIRST_LINE_ONLY = frozenset(
    {
        "age",
        "authorization",
        "content-length",
        "content-type",
        "etag",
        "expires",
        "from",
        "host",
        "if-modified-since",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "proxy-authorization",
        "referer",
        "retry-after",
        "server",
        "user-agent",
    }
)
#: What axios strips from every header value (``helpers/sanitizeHeaderValue.js``).
_AXIOS_INVALID = re.compile("[\x00-\x08\x0a-\x1f\x7f]+")

NodeHeaders = dict[str, str | list[str]]


def _axios_value(value: str) -> str:
    return _AXIOS_INVALID.sub("", value).strip(" \t")


def node_headers(lines: Iterable[tuple[str, str]]) -> NodeHeaders:
    """Raw header lines (name, value), in order, as ``response.headers`` in the
    Observatory: lower-cased names, repeated lines joined the way Node joins them,
    values cleaned as axios cleans them. An empty value stays an empty string."""
    headers: NodeHeaders = {}
    for raw_name, raw_value in lines:
        name = raw_name.lower()
        value = raw_value
        seen = headers.get(name)
        if name == "set-cookie":
            cookies = seen if isinstance(seen, list) else []
            cookies.append(value)
            headers[name] = cookies
        elif seen is None:
            headers[name] = value
        elif name not in _FIRST_LINE_ONLY:
            headers[name] = f"{seen}{'; ' if name == 'cookie' else ', '}{value}"
    return {
        name: [_axios_value(v) for v in value] if isinstance(value, list) else _axios_value(value)
        for name, value in headers.items()
    }


# JavaScript's String.prototype.trim(): WhiteSpace and LineTerminator code points.
#: JavaScript's WhiteSpace and LineTerminator code points (``trim``, ``\\s``).
JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
JS_SPACE += "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def trim(text: str) -> str:
    """``text.trim()`` in JavaScript."""
    return text.strip(JS_SPACE)


_LEADING_INT = re.compile(r"[+-]?[0-9]+")


def parse_int(text: str) -> int | None:
    """``parseInt(text, 10)`` in JavaScript, with None for NaN: leading spaces skipped,
    an optional sign, then as many ASCII digits as there are; nothing else counts
    (``str.isdigit`` accepts superscripts and other scripts' digits, JavaScript does not)."""
    match = _LEADING_INT.match(text.lstrip(JS_SPACE))
    return int(match.group()) if match else None
