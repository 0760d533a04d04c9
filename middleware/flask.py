"""Flask and Jinja access to the request's CSP nonce (``html`` preset).

``protect(app)`` registers :func:`csp_nonce` as a Jinja global on a Flask app, so a
template writes ``<script nonce="{{ csp_nonce() }}">``. Apps composed by hand call
:func:`init_app`. Outside Flask, read the WSGI environ or ASGI scope key
``"bastion.csp_nonce"`` (:data:`NONCE_KEY`) directly.
"""

from __future__ import annotations

from typing import Any

from bastion.middleware._header_policy import NONCE_KEY

__all__ = ["NONCE_KEY", "csp_nonce", "init_app"]


def csp_nonce() -> str:
    """This request's nonce, or ``""`` outside a request or when no nonce was issued
    (``api`` preset, exempt path, guard off): an empty nonce attribute matches nothing,
    so a script relying on it fails closed."""
    from flask import has_request_context, request

    if not has_request_context():
        return ""
    return str(request.environ.get(NONCE_KEY, ""))


def init_app(app: Any) -> None:
    """Register ``csp_nonce()`` as a Jinja global of a Flask app."""
    app.add_template_global(csp_nonce, "csp_nonce")
