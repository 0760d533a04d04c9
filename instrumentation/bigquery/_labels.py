"""Job labels and call site: who sent a job, from where, of what shape.

Every query job the instrumentor sends (jobs.insert and the jobs.query fast path, so
``query``, ``query_and_wait`` and DB-API alike) carries four BigQuery job labels, so
``INFORMATION_SCHEMA.JOBS`` and the Cloud Billing export group cost by them without
Bastion's telemetry:

* ``bastion-service``: ``OTEL_SERVICE_NAME``, else ``K_SERVICE`` (Cloud Run);
* ``bastion-route``: the Flask route template of the request being served, if any;
* ``bastion-shape``: the query fingerprint (``bastion.bq.query_fingerprint``);
* ``bastion-timeout-class``: the operation's timeout class.

Values follow BigQuery's label rules (at most 63 characters of lowercase letters,
digits, ``_`` and ``-``); labels the caller set win, and none is added to a job that
already has 64. They are sent in ``enforce`` only (``observe`` sends every request as
the caller wrote it). In both modes the operation's span gets the call site
(``code.file.path``, ``code.line.number``) and the route (``bastion.bq.route``).
"""

from __future__ import annotations

import os
import re
from typing import Any

from bastion.instrumentation.bigquery._guard import _callsite
from bastion.instrumentation.bigquery._operation import Operation
from bastion.instrumentation.bigquery._request import route_template
from bastion.instrumentation.bigquery._timeouts import CLASS_LABEL

SERVICE_KEY = "bastion-service"
ROUTE_KEY = "bastion-route"
SHAPE_KEY = "bastion-shape"
CLASS_KEY = CLASS_LABEL
#: Label of the advisor's own queries (``bastion queries``), so they can be told apart.
ADVISOR_KEY = "bastion-advisor"
ROUTE_ATTRIBUTE = "bastion.bq.route"
MAX_LABELS = 64
_INVALID = re.compile(r"[^a-z0-9_-]+")


def label_value(text: str) -> str:
    """``text`` within BigQuery's label-value rules: ``/games/<int:id>`` → ``games_int_id``."""
    return _INVALID.sub("_", text.lower()).strip("_")[:63]


def service_name() -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or os.environ.get("K_SERVICE") or ""


def label(op: Operation, sent: dict[str, Any], fingerprint: Any, *, send: bool) -> dict[str, Any]:
    """``sent`` (``_call_api`` keyword arguments) with the labels added to a query job
    body if ``send``, as a new dict (nothing the client holds is changed); ``sent``
    itself otherwise. Notes the call site on ``op`` either way."""
    path, body = sent.get("path"), sent.get("data")
    if sent.get("method") != "POST" or not isinstance(path, str) or not isinstance(body, dict):
        return sent
    if path.endswith("/jobs"):
        config = body.get("configuration")
        if not isinstance(config, dict) or not isinstance(config.get("query"), dict):
            return sent
        sql, given = config["query"].get("query"), config.get("labels")
    elif path.endswith("/queries"):
        config, sql, given = None, body.get("query"), body.get("labels")
    else:
        return sent
    route = route_template()
    if "code.file.path" not in op.applied:
        site = _callsite()
        file, _, line = site.rpartition(":")
        op.applied["code.file.path"] = file or site
        if line.isdigit():
            op.applied["code.line.number"] = int(line)
        if route:
            op.applied[ROUTE_ATTRIBUTE] = route
    if not send:
        return sent
    ours = {
        SERVICE_KEY: label_value(service_name()),
        ROUTE_KEY: label_value(route),
        SHAPE_KEY: label_value(fingerprint(sql)) if isinstance(sql, str) else "",
        CLASS_KEY: label_value(op.timeout_class),
    }
    labels = dict(given) if isinstance(given, dict) else {}
    for key, value in ours.items():
        if value and key not in labels and len(labels) < MAX_LABELS:
            labels[key] = value
    if config is None:
        return {**sent, "data": {**body, "labels": labels}}
    return {**sent, "data": {**body, "configuration": {**config, "labels": labels}}}
