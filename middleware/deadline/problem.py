"""The 504 answer for a request that ran out of time: an RFC 9457 problem document.

Built once at import: the same bytes for every timed-out request, so answering costs
nothing and leaks nothing (no path, budget, stack or exception text; those go to the
log and the span, where operators look).
"""

from __future__ import annotations

import json
from typing import Final

__all__ = ["ASGI_HEADERS", "BODY", "STATUS", "WSGI_HEADERS"]

STATUS: Final = "504 Gateway Timeout"

#: ``type`` is ``about:blank``, so by RFC 9457 §4.2.1 the title is the status phrase.
BODY: Final = json.dumps(
    {
        "type": "about:blank",
        "title": "Gateway Timeout",
        "status": 504,
        "detail": "The request did not complete within its time budget.",
    },
    separators=(",", ":"),
).encode()

WSGI_HEADERS: Final = (
    ("Content-Type", "application/problem+json"),
    ("Content-Length", str(len(BODY))),
    ("Cache-Control", "no-store"),
)

ASGI_HEADERS: Final = tuple((k.lower().encode(), v.encode()) for k, v in WSGI_HEADERS)
