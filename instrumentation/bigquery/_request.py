"""The inbound request a BigQuery call is made for, as Flask's public API tells it.

Read per query (the route template for the ``bastion-route`` label and the
``bastion.bq.route`` attribute, the path too for ``BASTION_BQ_ROUTE_CLASSES``). Flask
is never imported here: only looked up if the app already uses it. Outside a Flask
request (a script, an ASGI app, a thread without the request's context) both are "".
"""

from __future__ import annotations

import sys

__all__ = ["request_route", "route_template"]


def route_template() -> str:
    """The Flask route template being served (``/games/<int:id>``), or ""."""
    return request_route(with_path=False)[0]


def request_route(*, with_path: bool = True) -> tuple[str, str]:
    """(route template, path) of the Flask request being served; "" for what is unknown.

    The path is ``request.path`` (under the app's mount point, without the query)."""
    flask = sys.modules.get("flask")
    if flask is None:
        return "", ""
    try:
        if not flask.has_request_context():
            return "", ""
        request = flask.request
        rule = request.url_rule
        template = str(rule.rule) if rule is not None else ""
        return template, (str(request.path) if with_path else "")
    except RuntimeError:
        return "", ""
