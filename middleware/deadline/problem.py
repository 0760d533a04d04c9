"""The 504 answer for a request that ran out of time: an RFC 9457 problem document.

:class:`~bastion.middleware.deadline.DeadlineExceeded`'s, rendered once at import by
:func:`bastion.middleware.refusals.problem_for`: the same bytes for every timed-out request,
so answering costs nothing and leaks nothing (no path, budget, stack or exception
text; those go to the log and the span, where operators look).
"""

from __future__ import annotations

from typing import Final

from bastion.middleware.deadline._context import DeadlineExceeded
from bastion.middleware.refusals import problem_for

__all__ = ["ASGI_HEADERS", "BODY", "STATUS", "WSGI_HEADERS"]

_PROBLEM: Final = problem_for(DeadlineExceeded)

STATUS: Final = _PROBLEM.status_line
#: ``type`` is ``about:blank``, so by RFC 9457 §4.2.1 the title is the status phrase.
BODY: Final = _PROBLEM.body
WSGI_HEADERS: Final = _PROBLEM.wsgi_headers
ASGI_HEADERS: Final = _PROBLEM.asgi_headers
