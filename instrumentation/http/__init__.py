"""Outbound HTTP guard for ``requests``: bounded timeouts, a deadline cut, a TLS guard.

``requests`` has no default timeout, and its timeout applies to each socket operation,
so a server dripping one byte every half second holds ``timeout=1.0`` open forever.
``HttpInstrumentor`` (an OpenTelemetry ``BaseInstrumentor``, entry point
``bastion_http``) wraps ``requests.adapters.HTTPAdapter.send`` and
``urllib3.disable_warnings``, and in enforce mode sets urllib3's
``HTTPConnection.response_class`` to
:class:`~bastion.instrumentation.http._body.DeadlineHTTPResponse`
(so socket waits end by the deadline from the status line on); when ``BASTION_HTTP`` is
active it also replaces urllib3's ``HTTPResponse.read`` and ``read_chunked`` with thin
functions that report or convert a deadline cut (restored by ``uninstrument()``):

* ``BASTION_HTTP`` (off | observe | enforce, default observe): a call without a
  timeout gets ``(BASTION_HTTP_CONNECT_SECONDS, BASTION_HTTP_READ_SECONDS)``, the read
  part replaced by its upstream's entry in ``BASTION_HTTP_UPSTREAM_TIMEOUTS`` if listed;
  every timeout is capped at the request's remaining deadline (:mod:`bastion.middleware.deadline`);
  a body still arriving at the deadline is cut with :class:`DeadlineTimeout` (a
  ``requests.exceptions.ReadTimeout`` and a ``DeadlineExceeded``). observe changes
  nothing and records what would apply, and each call enforce would cut (at the deadline,
  or at the read timeout it would give a call without one: see
  ``OutboundGuard._judge_wait`` for what is compared) as a span event, a counter and one
  log line per call site.
* ``BASTION_TLS`` (off | observe | enforce, default observe): an HTTPS call with
  ``verify=False`` (argument or ``session.verify``) is recorded with its call site, or
  refused with :class:`InsecureTLSError` before a byte is sent, unless the host is in
  ``BASTION_TLS_ALLOW_INSECURE_HOSTS``; ``urllib3.disable_warnings()`` may not silence
  InsecureRequestWarning under enforce.
* ``BASTION_HTTP_PROPAGATE_DEADLINE``: the remaining budget goes out as
  ``X-Bastion-Timeout-Ms``.

Usage::

    from bastion.instrumentation.http import HttpInstrumentor
    HttpInstrumentor().instrument()            # settings from BASTION_* variables
    HttpInstrumentor().instrument(settings=HTTPSettings.from_env(http=Mode.ENFORCE))

The settings (:class:`HTTPSettings`) import without ``requests``; everything else needs
the ``http`` extra, and says so (:class:`bastion._extras.MissingExtra`) when it is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bastion.instrumentation.http.settings import HTTPSettings

if TYPE_CHECKING:
    from bastion.instrumentation.http._errors import (
        DeadlinePassed,
        DeadlineTimeout,
        InsecureTLSError,
    )
    from bastion.instrumentation.http.instrumentor import HttpInstrumentor

__all__ = [
    "DeadlinePassed",
    "DeadlineTimeout",
    "HTTPSettings",
    "HttpInstrumentor",
    "InsecureTLSError",
]

_NEEDS_EXTRA = frozenset(__all__) - {"HTTPSettings"}


def __getattr__(name: str) -> Any:
    # The guard itself needs ``requests``: imported on first use, so the settings
    # import on any install and a missing extra is named (MissingExtra) when reached.
    if name in _NEEDS_EXTRA:
        return getattr(importlib.import_module(f"{__name__}.instrumentor"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
