"""A Flask service without error handlers of its own for Bastion's refusals, wrapped by
``protect(app)``: ``/call/<name>`` runs one of tests/apps/refusals_calls.py's calls. Its
``/handled`` blueprint has the app's own handlers for ``ValueError`` and
``requests.RequestException``, which must win over Bastion's answer; its ``/late``
blueprint runs the call in an ``after_request`` hook."""

from __future__ import annotations

from typing import Any

import requests
from flask import Blueprint, Flask

from bastion.middleware.protect import protect
from tests.apps.refusals_calls import CALLS

app = Flask(__name__)
handled = Blueprint("handled", __name__, url_prefix="/handled")


@app.get("/call/<name>")
def call(name: str) -> Any:
    return {"result": CALLS[name]()}


@handled.get("/<name>")
def call_handled(name: str) -> Any:
    return {"result": CALLS[name]()}


@handled.errorhandler(ValueError)
@handled.errorhandler(requests.RequestException)
def app_answer(error: Exception) -> tuple[str, int]:
    return f"handled by the app: {type(error).__name__}", 409


#: ``/late/<name>`` runs the call in an ``after_request`` hook, outside the view's
#: error handling (Flask's ``handle_exception`` path).
late = Blueprint("late", __name__, url_prefix="/late")


@late.get("/<name>")
def call_late(name: str) -> Any:
    return {"result": "the view's answer"}


@late.after_request
def call_after(response: Any) -> Any:
    from flask import request

    CALLS[request.view_args["name"] if request.view_args else "boom"]()
    return response


app.register_blueprint(handled)
app.register_blueprint(late)
protect(app)
