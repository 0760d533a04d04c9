"""Handlers of the BigQuery v2 REST methods the google-cloud-bigquery client calls."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from . import loads, procedures, resources, translate
from ._types import to_cell
from .catalog import table_from_resource, table_resource
from .errors import BigQueryError, integer
from .http import BASE, DATASET, JOB, QUERY, ROUTINE, TABLE, UPLOAD, Answer, Request, Routes
from .jobs import Job
from .rules import Rule

if TYPE_CHECKING:
    from .server import LocalBigQuery

#: Upper bound of a jobs.query / getQueryResults long poll (BigQuery's documented cap).
MAX_WAIT_MS = 200_000


class RestAPI:
    def __init__(self, app: LocalBigQuery) -> None:
        self.app = app
        self.catalog = app.catalog
        self.jobs = app.jobs
        self._uploads: dict[str, dict[str, Any]] = {}

    def routes(self) -> Routes:
        r = Routes()
        r.add("GET", BASE + "/datasets", "datasets.list", self.list_datasets)
        r.add("POST", BASE + "/datasets", "datasets.insert", self.insert_dataset)
        r.add("GET", DATASET, "datasets.get", self.get_dataset)
        r.add("PATCH", DATASET, "datasets.patch", self.patch_dataset)
        r.add("PUT", DATASET, "datasets.update", self.patch_dataset)
        r.add("DELETE", DATASET, "datasets.delete", self.delete_dataset)
        r.add("GET", DATASET + "/tables", "tables.list", self.list_tables)
        r.add("POST", DATASET + "/tables", "tables.insert", self.insert_table)
        r.add("GET", TABLE, "tables.get", self.get_table)
        r.add("PATCH", TABLE, "tables.patch", self.patch_table)
        r.add("PUT", TABLE, "tables.update", self.patch_table)
        r.add("DELETE", TABLE, "tables.delete", self.delete_table)
        r.add("GET", DATASET + "/routines", "routines.list", self.list_routines)
        r.add("GET", ROUTINE, "routines.get", self.get_routine)
        r.add("DELETE", ROUTINE, "routines.delete", self.delete_routine)
        r.add("POST", TABLE + "/insertAll", "tabledata.insertAll", self.insert_all)
        r.add("GET", TABLE + "/data", "tabledata.list", self.list_rows)
        r.add("POST", BASE + "/jobs", "jobs.insert", self.insert_job)
        r.add("GET", BASE + "/jobs", "jobs.list", self.list_jobs)
        r.add("GET", JOB, "jobs.get", self.get_job)
        r.add("POST", JOB + "/cancel", "jobs.cancel", self.cancel_job)
        r.add("DELETE", JOB + "/delete", "jobs.delete", self.delete_job)
        r.add("POST", BASE + "/queries", "jobs.query", self.query)
        r.add("GET", QUERY, "jobs.getQueryResults", self.get_query_results)
        r.add("POST", UPLOAD, "jobs.upload", self.upload)
        r.add("PUT", UPLOAD, "jobs.upload", self.upload_chunk)
        r.add("GET", "/_bqserver/requests", "control.requests", self.control_requests)
        r.add("GET", "/_bqserver/rules", "control.rules", self.control_rules)
        r.add("POST", "/_bqserver/rules", "control.rules", self.control_add_rule)
        r.add("DELETE", "/_bqserver/rules", "control.rules", self.control_clear_rules)
        r.add("POST", "/_bqserver/reset", "control.reset", self.control_reset)
        r.add("GET", "/_bqserver/health", "control.health", lambda _: (200, {"ok": True}))
        return r

    # -- datasets -----------------------------------------------------------------------
    def list_datasets(self, req: Request) -> Answer:
        items = [
            {k: d[k] for k in ("kind", "id", "datasetReference", "location") if k in d}
            for d in self.catalog.list_datasets(req["project"])
        ]
        return 200, {"kind": "bigquery#datasetList", "etag": "x", "datasets": items}

    def insert_dataset(self, req: Request) -> Answer:
        return 200, self.catalog.create_dataset(req["project"], req.body)

    def get_dataset(self, req: Request) -> Answer:
        return 200, self.catalog.get_dataset(req["project"], req["dataset"])

    def patch_dataset(self, req: Request) -> Answer:
        return 200, self.catalog.patch_dataset(req["project"], req["dataset"], req.body)

    def delete_dataset(self, req: Request) -> Answer:
        contents = req.params.get("deleteContents", "false").lower() == "true"
        self.catalog.delete_dataset(req["project"], req["dataset"], contents)
        return 204, None

    # -- routines (stored procedures) ---------------------------------------------------
    def list_routines(self, req: Request) -> Answer:
        project, dataset = req["project"], req["dataset"]
        with self.catalog.lock:
            self.catalog.get_dataset(project, dataset)
            found = [
                procedures.resource(r)
                for name, r in sorted(self.catalog.routines.items())
                if name.startswith(f"{project}.{dataset}.")
            ]
        return 200, {"routines": found}

    def _routine(self, req: Request) -> str:
        full = f"{req['project']}.{req['dataset']}.{req['routine']}"
        if full not in self.catalog.routines:
            raise BigQueryError(
                404,
                "notFound",
                f"Not found: Routine {req['project']}:{req['dataset']}.{req['routine']}",
            )
        return full

    def get_routine(self, req: Request) -> Answer:
        with self.catalog.lock:
            return 200, procedures.resource(self.catalog.routines[self._routine(req)])

    def delete_routine(self, req: Request) -> Answer:
        with self.catalog.lock:
            del self.catalog.routines[self._routine(req)]
        return 204, None

    # -- tables -------------------------------------------------------------------------
    def _table_name(self, req: Request) -> str:
        return f"{req['project']}.{req['dataset']}.{req['table'].split('$', 1)[0]}"

    def _resource(self, name: str) -> dict[str, Any]:
        table = self.catalog.get_table(name)
        return table_resource(
            table, self.catalog.count_rows(table), self.catalog.table_bytes(table)
        )

    def list_tables(self, req: Request) -> Answer:
        items = []
        for table in self.catalog.list_tables(req["project"], req["dataset"]):
            resource = table_resource(table, 0, 0)
            keep = ("kind", "id", "tableReference", "type", "timePartitioning", "rangePartitioning")
            items.append({k: resource[k] for k in keep if k in resource})
        return 200, {"kind": "bigquery#tableList", "tables": items, "totalItems": len(items)}

    def insert_table(self, req: Request) -> Answer:
        table = table_from_resource(req["project"], req["dataset"], req.body)
        if not table.table_id:
            raise BigQueryError(400, "invalid", "Table reference is missing tableId")
        self.catalog.create_table(table)
        if table.kind == "VIEW":
            view_sql = req.body["view"]["query"]
            plan = self.jobs.engine.plan(view_sql, table.project, table.dataset)
            sql = translate.to_sqlite(plan.statements[0].copy())
            self.catalog.db.execute(f'CREATE VIEW "{table.full_name}" AS {sql}')
        return 200, self._resource(table.full_name)

    def get_table(self, req: Request) -> Answer:
        return 200, self._resource(self._table_name(req))

    def patch_table(self, req: Request) -> Answer:
        name = self._table_name(req)
        body = req.body
        with self.catalog.lock:
            table = self.catalog.get_table(name)
            if "requirePartitionFilter" in body:
                table.require_partition_filter = bool(body["requirePartitionFilter"])
            if "timePartitioning" in body and body["timePartitioning"] is not None:
                table.time_partitioning = dict(body["timePartitioning"])
            if "schema" in body:
                self.catalog.add_columns(table, body["schema"].get("fields", []))
            for key in ("description", "friendlyName", "labels", "expirationTime", "clustering"):
                if key in body:
                    table.extra[key] = body[key]
            table.modified_ms = int(time.time() * 1000)
        return 200, self._resource(name)

    def delete_table(self, req: Request) -> Answer:
        self.catalog.drop_table(self._table_name(req))
        return 204, None

    def insert_all(self, req: Request) -> Answer:
        table = self.catalog.get_table(self._table_name(req))
        rows = [r.get("json", {}) for r in req.body.get("rows", [])]
        ignore = bool(req.body.get("ignoreUnknownValues", False))
        _, errors = self.catalog.insert_rows(table, rows, ignore_unknown=ignore)
        if errors and req.body.get("skipInvalidRows"):
            bad = {e["index"] for e in errors}
            self.catalog.insert_rows(
                table, [r for i, r in enumerate(rows) if i not in bad], ignore_unknown=ignore
            )
        elif errors:
            # BigQuery refuses the whole batch; the valid rows are reported as "stopped".
            bad = {e["index"] for e in errors}
            errors += [
                {"index": i, "errors": [{"reason": "stopped", "location": "", "message": ""}]}
                for i in range(len(rows))
                if i not in bad
            ]
        body: dict[str, Any] = {"kind": "bigquery#tableDataInsertAllResponse"}
        if errors:
            body["insertErrors"] = sorted(errors, key=lambda e: e["index"])
        return 200, body

    def list_rows(self, req: Request) -> Answer:
        name = f"{req['project']}.{req['dataset']}.{req['table']}"
        anonymous = req["dataset"] == "_bqserver_anon"
        int64 = req.params.get("formatOptions.useInt64Timestamp", "false").lower() == "true"
        start = resources.page_start(req.params)
        limit = integer(req.params.get("maxResults"), "maxResults")
        if anonymous:
            job = self.jobs.get(req["project"], req["table"].removeprefix("anon_"))
            rows, token = resources.rows_page(job, start, limit, int64)
            total = len(job.outcome.rows)
        else:
            table = self.catalog.get_table(name)
            count = resources.DEFAULT_PAGE_ROWS if limit is None else limit
            stored = self.catalog.read_rows(table, start, count)
            rows = [
                {"f": [{"v": to_cell(v, f, int64)} for v, f in zip(r, table.schema, strict=False)]}
                for r in stored
            ]
            total = self.catalog.count_rows(table)
            token = str(start + len(rows)) if start + len(rows) < total and count > 0 else None
        body: dict[str, Any] = {
            "kind": "bigquery#tableDataList",
            "etag": "x",
            "totalRows": str(total),
        }
        if rows:
            body["rows"] = rows
        if token is not None:
            body["pageToken"] = token
        return 200, body

    # -- jobs ---------------------------------------------------------------------------
    def _runner(self, job_config: dict[str, Any], payload: bytes | None = None) -> Any:
        if "load" in job_config:
            return lambda job: loads.run_load(self.catalog, job, payload)
        if "copy" in job_config:
            return lambda job: loads.run_copy(self.catalog, job)
        return None

    def insert_job(self, req: Request) -> Answer:
        reference = req.body.get("jobReference") or {}
        config = req.body.get("configuration") or {}
        if not isinstance(config, dict) or not isinstance(reference, dict):
            raise BigQueryError(400, "invalid", "configuration and jobReference must be objects")
        job = self.jobs.create(
            req["project"],
            config,
            job_id=reference.get("jobId"),
            location=reference.get("location"),
            run=self._runner(config),
        )
        if config.get("dryRun") and job.error is not None:
            raise job.error  # a dry run is answered synchronously: errors are HTTP errors
        return 200, resources.job_resource(job)

    def list_jobs(self, req: Request) -> Answer:
        jobs = self.jobs.in_project(req["project"])
        items = [resources.job_resource(j) for j in jobs]
        return 200, {"kind": "bigquery#jobList", "jobs": items}

    def get_job(self, req: Request) -> Answer:
        return 200, resources.job_resource(self.jobs.get(req["project"], req["job"]))

    def cancel_job(self, req: Request) -> Answer:
        job = self.jobs.cancel(req["project"], req["job"])
        return 200, {"kind": "bigquery#jobCancelResponse", "job": resources.job_resource(job)}

    def delete_job(self, req: Request) -> Answer:
        self.jobs.delete(req["project"], req["job"])
        return 204, None

    def _wait_ms(self, value: Any) -> float:
        wait = integer(value, "timeoutMs", self.app.default_wait_ms) or 0
        return min(max(wait, 0), MAX_WAIT_MS) / 1000

    def query(self, req: Request) -> Answer:
        body = dict(req.body)
        wait = self._wait_ms(body.pop("timeoutMs", None))
        body.pop("requestId", None)
        format_options = body.pop("formatOptions", {}) or {}
        max_results = body.pop("maxResults", None)
        location = body.pop("location", None)
        config: dict[str, Any] = {"query": body}
        for key in ("jobTimeoutMs", "labels", "dryRun"):
            if key in body:
                config[key] = body.pop(key)
        body.pop("jobCreationMode", None)
        job = self.jobs.create(req["project"], config, location=location)
        if job.done and job.error is not None:
            raise job.error
        self.jobs.wait(job, wait)
        if job.done and job.error is not None:
            raise BigQueryError(job.failed_status, job.error.reason, job.error.message)
        return 200, resources.query_response(
            job,
            kind="bigquery#queryResponse",
            max_results=integer(max_results, "maxResults"),
            int64_micros=bool(format_options.get("useInt64Timestamp", False)),
        )

    def get_query_results(self, req: Request) -> Answer:
        job = self.jobs.get(req["project"], req["job"])
        self.jobs.wait(job, self._wait_ms(req.params.get("timeoutMs")))
        if job.done and job.error is not None:
            raise BigQueryError(job.failed_status, job.error.reason, job.error.message)
        limit = req.params.get("maxResults")
        return 200, resources.query_response(
            job,
            kind="bigquery#getQueryResultsResponse",
            start=resources.page_start(req.params),
            max_results=integer(limit, "maxResults"),
            int64_micros=req.params.get("formatOptions.useInt64Timestamp", "").lower() == "true",
        )

    # -- uploads ------------------------------------------------------------------------
    def _start_upload(self, project: str, resource: dict[str, Any], payload: bytes) -> Job:
        reference = resource.get("jobReference", {})
        config = resource.get("configuration", {})
        return self.jobs.create(
            project,
            config,
            job_id=reference.get("jobId"),
            location=reference.get("location"),
            run=self._runner(config, payload),
        )

    def upload(self, req: Request) -> Answer:
        kind = req.params.get("uploadType", "")
        if kind == "multipart":
            resource, payload = loads.split_multipart(req.content_type, req.raw)
            return 200, resources.job_resource(
                self._start_upload(req["project"], resource, payload)
            )
        if kind == "resumable":
            upload_id = uuid.uuid4().hex
            self._uploads[upload_id] = {"resource": json.loads(req.raw or b"{}"), "data": b""}
            req.response_headers["Location"] = (
                f"http://{self.app.host}:{self.app.port}/upload/bigquery/v2/projects/"
                f"{req['project']}/jobs?uploadType=resumable&upload_id={upload_id}"
            )
            return 200, None
        raise BigQueryError(400, "invalid", f"Unsupported uploadType: {kind!r}")

    def upload_chunk(self, req: Request) -> Answer:
        session = self._uploads.get(req.params.get("upload_id", ""))
        if session is None:
            raise BigQueryError(404, "notFound", "Not found: upload session")
        session["data"] += req.raw
        total = _total_from_range(req.headers.get("content-range", ""))
        if total is None or len(session["data"]) < total:
            req.response_headers["Range"] = f"bytes=0-{len(session['data']) - 1}"
            return 308, None
        del self._uploads[req.params["upload_id"]]
        job = self._start_upload(req["project"], session["resource"], session["data"])
        return 200, resources.job_resource(job)

    # -- control ------------------------------------------------------------------------
    def control_requests(self, req: Request) -> Answer:
        return 200, {"requests": [r.to_dict() for r in self.app.requests]}

    def control_rules(self, req: Request) -> Answer:
        return 200, {"rules": [r.to_dict() for r in self.app.rules.list()]}

    def control_add_rule(self, req: Request) -> Answer:
        try:
            rule = self.app.add_rule(Rule.from_dict(req.body))
        except (TypeError, ValueError) as exc:
            raise BigQueryError(400, "invalid", str(exc)) from None
        return 200, rule.to_dict()

    def control_clear_rules(self, req: Request) -> Answer:
        self.app.rules.clear()
        return 204, None

    def control_reset(self, req: Request) -> Answer:
        self.app.reset(data=req.params.get("data", "false").lower() == "true")
        return 204, None


def _total_from_range(value: str) -> int | None:
    """Total size from ``Content-Range: bytes a-b/total`` (``*`` while unknown)."""
    if "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None
