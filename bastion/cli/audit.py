"""``bastion audit-partitions``: partitioned tables that still accept unfiltered scans.

A query on a partitioned table without a filter on the partition column reads (and
bills) every partition. ``require_partition_filter = TRUE`` makes BigQuery refuse such
queries outright; this command lists every table's partitioning and whether the
option is set, prints the DDL for those missing it and, with ``--apply``, runs it.

With ``--impact SOURCE`` (a span file or ``bq:PROJECT/REGION``, as for ``bastion
queries``) it also lists, per table lacking the option, the observed query shapes and
call sites that would fail once it is set, and what those unfiltered shapes cost per
month now; ``--apply`` then refuses those tables (and says why) unless ``--force``.

It uses the real ``google-cloud-bigquery`` client: with ``--api-endpoint`` (a local
BigQuery REST server, an emulator) anonymous credentials, otherwise Application
Default Credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import click
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from bastion.cli import _output
from bastion.cli.queries import (
    bytes_text,
    price_option,
    read_report,
    source_options,
    usd_text,
)
from bastion.instrumentation.costs.impact import TableImpact, impact, refusals
from bastion.instrumentation.costs.shapes import Report


class AuditError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class TableAudit:
    table: str  # project.dataset.table
    partitioning: str | None  # DAY, HOUR, MONTH, YEAR, RANGE; None: not partitioned
    column: str | None
    expiration_days: float | None
    require_partition_filter: bool

    @property
    def needs_filter(self) -> bool:
        return self.partitioning is not None and not self.require_partition_filter

    @property
    def ddl(self) -> str | None:
        if not self.needs_filter:
            return None
        return f"ALTER TABLE `{self.table}` SET OPTIONS (require_partition_filter = TRUE)"


def make_client(project: str, api_endpoint: str | None) -> Any:
    from google.cloud import bigquery

    if api_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": api_endpoint},
        )
    return bigquery.Client(project=project)


def describe(table: Any) -> TableAudit:
    """The audit row of a ``google.cloud.bigquery.Table``."""
    time_partitioning = table.time_partitioning
    range_partitioning = table.range_partitioning
    partitioning = column = None
    expiration_days = None
    if time_partitioning is not None:
        partitioning = str(time_partitioning.type_ or "DAY")
        column = time_partitioning.field or "_PARTITIONTIME"
        if time_partitioning.expiration_ms:
            expiration_days = time_partitioning.expiration_ms / 86_400_000
    elif range_partitioning is not None:
        partitioning, column = "RANGE", range_partitioning.field
    return TableAudit(
        table=f"{table.project}.{table.dataset_id}.{table.table_id}",
        partitioning=partitioning,
        column=column,
        expiration_days=expiration_days,
        require_partition_filter=bool(table.require_partition_filter),
    )


def _api_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    return (
        exceptions.GoogleAPIError,
        auth_exceptions.GoogleAuthError,
        requests.exceptions.RequestException,
    )


def _bounded(timeout: float) -> dict[str, Any]:
    """``retry``/``timeout`` arguments that bound each API call (the client's default
    retry keeps trying an unreachable endpoint for ten minutes)."""
    from google.cloud import bigquery

    return {"retry": bigquery.DEFAULT_RETRY.with_timeout(timeout), "timeout": timeout}


def audit(
    client: Any,
    datasets: Iterable[str],
    *,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> list[TableAudit]:
    """Every table of ``datasets`` (all of the project's when empty), described."""
    from google.api_core.exceptions import NotFound

    errors = _api_errors()
    names = list(datasets)
    bounded = _bounded(timeout)
    try:
        if not names:
            names = [d.dataset_id for d in client.list_datasets(**bounded)]
            if not names:
                raise AuditError(f"project {client.project!r} has no datasets", _output.USAGE)
        items = []
        for name in names:
            try:
                tables = client.list_tables(name, **bounded)
                found = [t for t in tables if t.table_type == "TABLE"]
            except NotFound:
                raise AuditError(
                    f"dataset {client.project}.{name} not found", _output.USAGE
                ) from None
            items.extend(found)
        if not items:
            where = ", ".join(f"{client.project}.{name}" for name in names)
            raise AuditError(f"no tables in {where}: nothing to audit", _output.USAGE)
        task = progress.add_task("reading tables", total=len(items)) if progress else None
        rows = []
        for item in items:
            rows.append(describe(client.get_table(item.reference, **bounded)))
            if progress is not None and task is not None:
                progress.advance(task)
        return rows
    except AuditError:
        raise
    except errors as error:
        raise AuditError(f"BigQuery API: {_first_line(error)}", _output.UNREACHABLE) from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def apply(
    client: Any, rows: list[TableAudit], progress: Progress | None = None, timeout: float = 30.0
) -> dict[str, str]:
    """Run the DDL of every row needing it: ``{table: "applied" | error message}``."""
    outcome: dict[str, str] = {}
    todo = [row for row in rows if row.ddl]
    task = progress.add_task("applying DDL", total=len(todo)) if progress else None
    for row in todo:
        try:
            bounded = _bounded(timeout)
            client.query(row.ddl, **bounded).result(**bounded)
            outcome[row.table] = "applied"
            row.require_partition_filter = True
        except _api_errors() as error:
            outcome[row.table] = _first_line(error)
        if progress is not None and task is not None:
            progress.advance(task)
    return outcome


@click.command("audit-partitions")
@click.option("--project", required=True, help="Google Cloud project that owns the datasets.")
@click.option(
    "--dataset", "datasets", multiple=True, help="Dataset to audit (repeatable); default: all."
)
@click.option("--api-endpoint", metavar="URL", help="BigQuery REST endpoint (a local server).")
@click.option("--apply", "do_apply", is_flag=True, help="Run the DDL after confirmation.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds allowed per API call, retries included.",
)
@click.option(
    "--impact",
    "impact_source",
    metavar="SOURCE",
    help="Observed queries (span file or bq:PROJECT/REGION): list what the option would "
    "break, and make --apply refuse those tables.",
)
@click.option("--force", is_flag=True, help="--apply even to tables observed queries break.")
@source_options
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
def audit_partitions(
    project: str,
    datasets: tuple[str, ...],
    api_endpoint: str | None,
    do_apply: bool,
    yes: bool,
    timeout: float,
    impact_source: str | None,
    force: bool,
    days: float,
    usd_per_tib: float | None,
    usd_per_slot_hour: float | None,
    workers: int,
    window_days: float | None,
    as_json: bool,
) -> None:
    """List partitioned tables and set require_partition_filter where it is missing."""
    if do_apply and as_json and not yes:
        _output.fail("--apply with --json cannot ask for confirmation: add --yes", _output.USAGE)
    try:
        client = make_client(project, api_endpoint)
    except _api_errors() as error:
        _output.fail(f"BigQuery client: {_first_line(error)}", _output.UNREACHABLE, as_json=as_json)
    with Progress(console=_output.stderr(), transient=True, disable=as_json) as progress:
        try:
            rows = audit(client, datasets, progress=progress, timeout=timeout)
        except AuditError as error:
            _output.fail(str(error), error.exit_code, as_json=as_json)
    missing = [row for row in rows if row.needs_filter]
    impacts: list[TableImpact] | None = None
    report = None
    refused: dict[str, str] = {}
    if impact_source is not None:
        _, report = read_report(
            impact_source,
            days=days,
            api_endpoint=api_endpoint,
            timeout=timeout,
            price=price_option(usd_per_tib, usd_per_slot_hour, as_json),
            window_days=window_days,
            as_json=as_json,
            workers=workers,
        )
        columns = {row.table: row.column or "" for row in missing}
        impacts = impact(columns, report, project)
        refused = refusals(impacts)
    applied: dict[str, str] = {}
    if not as_json:
        _print(rows)
        if impacts is not None and report is not None:
            _print_impact(impacts, report)
    if do_apply and missing:
        allowed = [row for row in missing if force or row.table not in refused]
        if allowed:
            question = f"Run {len(allowed)} ALTER TABLE statement(s)?"
            if yes or _confirm(question):
                with Progress(
                    console=_output.stderr(), transient=True, disable=as_json
                ) as progress:
                    applied = apply(client, allowed, progress, timeout)
            elif not as_json:
                _output.stdout().print("nothing changed")
        if not force:
            applied.update({table: why for table, why in refused.items()})
        if not as_json:
            for table, result in applied.items():
                mark = "[green]applied[/]" if result == "applied" else f"[red]{escape(result)}[/]"
                _output.stdout().print(f"{escape(table)}: {mark}")
    if as_json:
        payload: dict[str, Any] = {
            "project": project,
            "tables": [{**asdict(row), "ddl": row.ddl} for row in rows],
            "missing_filter": [row.table for row in missing],
            "applied": applied,
        }
        if impacts is not None and report is not None:
            payload["impact"] = [entry.as_dict(report) for entry in impacts]
            payload["would_break"] = sorted(refused)
        _output.emit_json(payload)
    if any(row.needs_filter for row in rows):
        raise SystemExit(_output.FINDINGS)


def _confirm(question: str) -> bool:
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:  # end of input: no answer is no
        return False


def _print(rows: list[TableAudit]) -> None:
    console = _output.stdout()
    partitioned = [row for row in rows if row.partitioning]
    table = Table(title="Partitioned tables")
    for column in ("Table", "Partitioning", "Column", "Expiration", "Filter required"):
        table.add_column(column)
    for row in partitioned:
        expiration = f"{row.expiration_days:g} d" if row.expiration_days else "never"
        required = "[green]yes[/]" if row.require_partition_filter else "[red]no[/]"
        table.add_row(
            escape(row.table),
            row.partitioning or "",
            escape(row.column or ""),
            expiration,
            required,
        )
    console.print(table)
    console.print(f"{len(partitioned)} partitioned, {len(rows) - len(partitioned)} not partitioned")
    ddl = [row.ddl for row in rows if row.ddl]
    if ddl:
        console.print(f"\n[bold]{len(ddl)} table(s) accept unfiltered scans; fix with:[/]")
        for statement in ddl:
            console.print(escape(statement) + ";", soft_wrap=True)
    elif partitioned:
        console.print("[green]every partitioned table requires a partition filter[/]")


def _print_impact(impacts: list[TableImpact], report: Report) -> None:
    console = _output.stdout()
    table = Table(
        title=f"Queries that require_partition_filter would break ({report.records} observed)"
    )
    for column, justify in (
        ("Table", "left"),
        ("Shape", "left"),
        ("Runs", "right"),
        ("Billed", "right"),
        ("$/month now", "right"),
        ("Call sites", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for entry in impacts:
        if not entry.breaking:
            table.add_row(escape(entry.table), "[green]no observed query breaks[/]", "", "", "", "")
        for shape in entry.breaking:
            table.add_row(
                escape(entry.table),
                escape(shape.label[:200]),
                str(shape.count),
                bytes_text(shape.bytes_billed),
                usd_text(report.usd_per_month(shape)),
                escape("\n".join(site for site, _ in shape.call_sites.most_common(3))),
            )
        if entry.unjudged:
            table.add_row(
                escape(entry.table),
                f"[yellow]{len(entry.unjudged)} shape(s) without SQL text: not judged[/]",
                "",
                "",
                "",
                "",
            )
    console.print(table)
