"""Jobs: the PENDING → RUNNING → DONE lifecycle, limits, cancellation, statistics.

A query is planned and checked when the job is created (syntax, missing tables,
``require_partition_filter``, ``maximumBytesBilled``): a refused job is DONE at once
with its ``errorResult``. Otherwise it stays PENDING then RUNNING for the durations of
the first matching :class:`~.rules.Rule` (zero by default: DONE in the request that
created it) and runs on the sqlite mirror when it completes, so a cancelled DML job
changes nothing. ``jobTimeoutMs`` ends a job that would outlive it with reason
``timeout``; ``jobs.cancel`` ends it with reason ``stopped``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import history
from .catalog import Catalog
from .engine import Engine, Plan, Scan, bind_parameters
from .errors import BigQueryError, integer
from .loads import write_rows
from .outcome import Outcome
from .rules import Rule, RuleBook

MB = 1024 * 1024
#: BigQuery bills at least 10 MB per referenced table, rounded up to the next MB.
MIN_BILLED_PER_TABLE = 10 * MB
REASON_STATUS = {
    "accessDenied": 403,
    "backendError": 500,
    "duplicate": 409,
    "internalError": 500,
    "invalid": 400,
    "invalidQuery": 400,
    "notFound": 404,
    "quotaExceeded": 403,
    "rateLimitExceeded": 429,
    "resourcesExceeded": 400,
}


def billed_bytes(processed: int, tables: int) -> int:
    if processed <= 0:
        return 0
    rounded = -(-processed // MB) * MB
    return max(rounded, MIN_BILLED_PER_TABLE * max(tables, 1))


@dataclass
class Job:
    project: str
    job_id: str
    location: str
    configuration: dict[str, Any]
    kind: str
    created: float
    due: float
    started: float
    rule: Rule | None = None
    plan: Plan | None = None
    params: Any = None
    scan: Scan = field(default_factory=Scan)
    cache_hit: bool = False
    done: bool = False
    ended: float | None = None
    error: BigQueryError | None = None
    outcome: Outcome = field(default_factory=Outcome)
    load_stats: dict[str, str] = field(default_factory=dict)
    timer: threading.Timer | None = None
    run: Callable[[Job], None] | None = None
    #: Set when the job is bound to end failed at ``due`` (``jobTimeoutMs``).
    fate: BigQueryError | None = None
    #: True once a thread has started completing the job (runs it exactly once).
    claimed: bool = False

    @property
    def sql(self) -> str | None:
        query = self.configuration.get("query", {}).get("query")
        return query if isinstance(query, str) else None

    def state(self, now: float) -> str:
        if self.done:
            return "DONE"
        return "RUNNING" if now >= self.started else "PENDING"

    @property
    def failed_status(self) -> int:
        assert self.error is not None
        return REASON_STATUS.get(self.error.reason, 400)


class JobManager:
    def __init__(self, catalog: Catalog, rules: RuleBook, cache_seconds: float = 86_400) -> None:
        self.catalog = catalog
        self.engine = Engine(catalog)
        self.rules = rules
        self.cache_seconds = cache_seconds
        self.jobs: dict[tuple[str, str], Job] = {}
        self._cache: dict[str, float] = {}
        self._lock = threading.Condition()

    # -- creation -----------------------------------------------------------------
    def create(
        self,
        project: str,
        configuration: Mapping[str, Any],
        job_id: str | None = None,
        location: str | None = None,
        run: Callable[[Job], None] | None = None,
    ) -> Job:
        """Create and start a job (jobs.insert, jobs.query, uploads)."""
        job_id = job_id or f"job_{uuid.uuid4().hex}"
        with self._lock:
            if (project, job_id) in self.jobs:
                raise BigQueryError(409, "duplicate", f"Already Exists: Job {project}:US.{job_id}")
        config = copy.deepcopy(dict(configuration))
        kind = next((k for k in ("query", "load", "copy", "extract") if k in config), "query")
        timeout_ms = integer(config.get("jobTimeoutMs"), "jobTimeoutMs", 0) or 0
        now = time.time()
        job = Job(project, job_id, location or self.catalog.location, config, kind, now, now, now)
        job.run = run
        job.rule = self.rules.for_job(job.sql)
        pending = job.rule.pending_seconds if job.rule else 0.0
        running = job.rule.running_seconds if job.rule else 0.0
        job.started, job.due = now + pending, now + pending + running
        with self._lock:
            self.jobs[(project, job_id)] = job
        try:
            if kind == "query":
                self._prepare_query(job)
        except BigQueryError as exc:
            self._finish(job, exc)
            return job
        if config.get("dryRun"):
            job.started = job.due = now
            job.cache_hit = False
            self._finish(job, None)  # validated and estimated; nothing runs
            return job
        limit = now + timeout_ms / 1000 if timeout_ms > 0 else None
        if limit is not None and limit < job.due:
            job.due = limit
            job.fate = BigQueryError(
                400,
                "timeout",
                f"Job execution was cancelled: Job timed out after {timeout_ms / 1000:g} sec",
            )
        if job.due > now:
            self._schedule(job, job.due, lambda: self._complete(job))
        else:
            self._complete(job)
        return job

    def _prepare_query(self, job: Job) -> None:
        query = job.configuration["query"]
        sql = job.sql
        if sql is None:
            raise BigQueryError(400, "invalid", "Required parameter is missing: query")
        if str(query.get("useLegacySql", "false")).lower() == "true":
            raise BigQueryError(
                400, "invalid", "bqserver runs GoogleSQL only: useLegacySql=true is not supported"
            )
        default = query.get("defaultDataset") or {}
        job.plan = self.engine.plan(sql, job.project, default.get("datasetId"))
        for name in job.plan.tables:
            if history.is_jobs_view(name):
                with self._lock:
                    known = list(self.jobs.values())
                history.refresh(self.catalog, name, known, job)
        self.engine.check(job.plan)
        job.params = bind_parameters(query.get("queryParameters", []), query.get("parameterMode"))
        job.scan = self.engine.scan(job.plan, job.params)
        if job.rule is not None and job.rule.bytes_processed is not None:
            job.scan.bytes_processed = job.rule.bytes_processed
        key = self._cache_key(job)
        if key is not None:
            hit_time = self._cache.get(key)
            job.cache_hit = hit_time is not None and time.time() - hit_time < self.cache_seconds
        if job.cache_hit:
            return
        limit = integer(query.get("maximumBytesBilled"), "maximumBytesBilled")
        billed = billed_bytes(job.scan.bytes_processed, job.scan.tables)
        if limit is not None and billed > limit:
            raise BigQueryError(
                400,
                "bytesBilledLimitExceeded",
                f"Query exceeded limit for bytes billed: {limit}. {billed} or higher required.",
            )

    def _cache_key(self, job: Job) -> str | None:
        query = job.configuration["query"]
        plan = job.plan
        if plan is None or not plan.is_query or query.get("useQueryCache") is False:
            return None
        if query.get("destinationTable"):
            return None
        seen: set[str] = set()
        versions = [v for name in sorted(plan.tables) for v in self._versions(name, plan, seen)]
        material = [job.sql, query.get("defaultDataset"), query.get("queryParameters"), versions]
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def _versions(self, name: str, plan: Plan, seen: set[str]) -> list[str]:
        """Data versions a read of ``name`` depends on: a view's or materialized view's
        own and those of every table it reads, so a write to a base table is a miss."""
        table = self.catalog.find_table(name)
        versions = [f"{name}@{table.version if table else -1}"]
        definition = (
            (table.extra.get("view") or table.extra.get("materializedView") or {}) if table else {}
        )
        query = definition.get("query")
        if not isinstance(query, str) or name in seen:
            return versions
        seen.add(name)
        try:
            sources = self.engine.plan(query, plan.project, plan.dataset).tables
        except BigQueryError:  # a view that no longer parses: its own version only
            return versions
        return versions + [
            v for source in sorted(sources) for v in self._versions(source, plan, seen)
        ]

    def _schedule(self, job: Job, when: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(max(0.0, when - time.time()), action)
        timer.daemon = True
        job.timer = timer
        timer.start()

    # -- completion ---------------------------------------------------------------
    def _complete(self, job: Job) -> None:
        with self._lock:
            if job.done or job.claimed:
                return
            job.claimed = True
        if job.fate is not None:
            self._finish(job, job.fate)
            return
        rule = job.rule
        if rule is not None and rule.reason and rule.endpoint is None:
            self._finish(job, BigQueryError(400, rule.reason, rule.message or rule.reason))
            return
        try:
            if job.kind == "query" and job.plan is not None:
                job.outcome = self.engine.execute(job.plan, job.params)
                self._store_destination(job)
                key = self._cache_key(job)
                if key is not None and not job.cache_hit:
                    self._cache[key] = time.time()
            elif job.run is not None:
                job.run(job)
        except BigQueryError as exc:
            self._finish(job, exc)
            return
        except Exception as exc:  # a bug here must fail the job, not hang its waiters
            self._finish(job, BigQueryError(500, "internalError", f"bqserver: {exc!r}"))
            return
        self._finish(job, None)

    def _store_destination(self, job: Job) -> None:
        query = job.configuration["query"]
        destination = query.get("destinationTable")
        if not destination or job.outcome.schema is None:
            return
        write_rows(
            self.catalog,
            f"{destination['projectId']}.{destination['datasetId']}.{destination['tableId']}",
            job.outcome.schema,
            job.outcome.rows,
            query.get("writeDisposition", "WRITE_EMPTY"),
            stored=True,
        )

    def _finish(self, job: Job, error: BigQueryError | None) -> None:
        with self._lock:
            if job.done:
                return
            job.error = error
            job.done = True
            job.ended = time.time()
            job.started = min(job.started, job.ended)
            if job.timer is not None:
                job.timer.cancel()
            self._lock.notify_all()

    # -- access -------------------------------------------------------------------
    def get(self, project: str, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get((project, job_id))
        if job is None:
            raise BigQueryError(404, "notFound", f"Not found: Job {project}:{job_id}")
        if not job.done and time.time() >= job.due:
            self._complete(job)  # the timer is late; settle the job now
        return job

    def wait(self, job: Job, seconds: float) -> bool:
        """Block until ``job`` is DONE or ``seconds`` passed; True if DONE."""
        deadline = time.time() + max(0.0, seconds)
        while True:
            if not job.done and time.time() >= job.due:
                self._complete(job)  # a late timer; no-op while another thread runs it
            with self._lock:
                if job.done:
                    return True
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                until_due = job.due - time.time()
                self._lock.wait(min(remaining, until_due + 0.001) if until_due > 0 else remaining)

    def cancel(self, project: str, job_id: str) -> Job:
        job = self.get(project, job_id)
        self._finish(
            job,
            BigQueryError(
                400, "stopped", "Job execution was cancelled: User requested cancellation"
            ),
        )
        return job

    def in_project(self, project: str) -> list[Job]:
        with self._lock:
            return [job for (owner, _), job in self.jobs.items() if owner == project]

    def delete(self, project: str, job_id: str) -> None:
        job = self.get(project, job_id)
        with self._lock:
            self.jobs.pop((job.project, job.job_id), None)

    def reset(self) -> None:
        with self._lock:
            for job in self.jobs.values():
                if job.timer is not None:
                    job.timer.cancel()
            self.jobs.clear()
            self._cache.clear()
