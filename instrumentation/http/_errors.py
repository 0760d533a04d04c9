"""The exceptions the outbound HTTP guard raises, shaped so existing handlers catch them."""

from __future__ import annotations

from typing import Any

import requests

from bastion.middleware.deadline import Deadline, DeadlineTimeoutError
from bastion.middleware.refusals import PROBLEM_TYPE_BASE, BastionRefusal

__all__ = ["DeadlinePassed", "DeadlineTimeout", "InsecureTLSError"]


class InsecureTLSError(requests.exceptions.SSLError, BastionRefusal):
    """An HTTPS call with certificate verification switched off, refused (``BASTION_TLS=enforce``).

    Raised before any byte is sent. It is a :class:`requests.exceptions.SSLError` (hence a
    ``ConnectionError`` and a ``RequestException``) because that is what the same call
    raises when verification is on and the certificate is not trusted: code that already
    copes with a TLS failure copes with this one. ``host`` and ``call_site`` (``file:line``)
    say which call was refused. Unhandled, the client gets a 500 problem document.
    """

    problem_status = 500
    problem_type = PROBLEM_TYPE_BASE + "insecure-tls"
    problem_title = "Outbound call refused by TLS policy"
    problem_detail = "An outbound call of this service was refused before it was sent."

    def __init__(self, message: str, *, host: str, call_site: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.host = host
        self.call_site = call_site


class DeadlineTimeout(requests.exceptions.ReadTimeout, DeadlineTimeoutError):
    """An outbound call cut because the request's deadline ran out (``BASTION_HTTP=enforce``).

    Raised when a timeout that the deadline had shortened fires, and when a response
    body is still arriving at the deadline (a slow drip, ``stream=True`` included). It is a
    :class:`requests.exceptions.ReadTimeout` (so ``except requests.Timeout`` handles it), a
    builtin :class:`TimeoutError`, and a :class:`bastion.middleware.deadline.DeadlineExceeded` (so
    the deadline middleware answers 504).
    ``phase`` is ``response`` (connect, send or headers) or ``body``.
    """

    def __init__(
        self,
        message: str,
        *,
        phase: str,
        deadline: Deadline | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.deadline = deadline
        self.phase = phase


class DeadlinePassed(DeadlineTimeoutError):
    """An outbound call not sent because the request's deadline had already passed
    (``BASTION_HTTP=enforce``).

    Deliberately *not* a ``requests`` exception: retry loops keyed on
    ``requests.Timeout`` (google-api-core's default retry for BigQuery, urllib3's,
    a caller's own) would otherwise spin on it until their own budget ran out, long
    after the request they serve has been answered. As a
    :class:`~bastion.middleware.deadline.DeadlineExceeded` it reaches the deadline middleware,
    which answers 504; as a builtin :class:`TimeoutError`, ``except TimeoutError``
    catches it. ``phase`` is always ``before-send``.
    """

    phase = "before-send"

    def __init__(self, message: str, *, deadline: Deadline | None = None, request: Any = None):
        super().__init__(message, deadline)
        self.request = request
