"""``bastion views SOURCE``: materialized views that would serve repeated query shapes.

For every read shape of SOURCE that ran at least ``--min-runs`` times, a verdict:
eligible, with the ``CREATE MATERIALIZED VIEW`` DDL (partitioned and clustered in line
with its base table, refresh options), the query rewritten to read it and the saving;
or not eligible, with the BigQuery limit it breaks (:mod:`bastion.instrumentation.costs.views`).
``--validate`` creates each view under a throw-away name on ``--project`` (the local
server with ``--api-endpoint``), runs the original and the rewritten query and says
whether they return the same rows (:mod:`bastion.instrumentation.costs.validate`).

The saving: with ``--validate``, the shape's cost per month times the share of bytes
billed the rewritten query saved; otherwise only an upper bound (the shape's current
cost). Refreshing the view is billed too (the base table's changed partitions), and is
not in the figure.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from bastion.cli import _output
from bastion.cli.audit import _api_errors, _first_line, make_client
from bastion.cli.queries import price_option, read_report, source_options, usd_text
from bastion.instrumentation.costs.shapes import NOT_READS, Report, Shape
from bastion.instrumentation.costs.validate import table_info, validate
from bastion.instrumentation.costs.views import Refresh, TableInfo, Verdict, propose


def _names(given: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in given:
        fingerprint, sep, name = item.partition("=")
        if not sep or not fingerprint or not name:
            raise click.BadParameter(
                f"{item!r}: expected FINGERPRINT=VIEW_NAME", param_hint="--name"
            )
        out[fingerprint] = name
    return out


def candidates(report: Report, min_runs: int) -> list[Shape]:
    """Shapes worth a view: repeated reads with SQL, the costliest first."""
    shapes = [
        s
        for s in report.shapes
        if s.count >= min_runs and s.example and s.statement_type not in NOT_READS
    ]
    return sorted(shapes, key=report.usd_per_month, reverse=True)


@click.command("views")
@click.argument("source")
@click.option("--project", required=True, help="Project of the base tables (resolves names).")
@click.option("--api-endpoint", metavar="URL", help="BigQuery REST endpoint (a local server).")
@click.option("--min-runs", type=click.IntRange(min=2), default=3, show_default=True)
@click.option("--refresh-minutes", type=click.IntRange(1, 10_080), default=30, show_default=True)
@click.option(
    "--max-staleness-minutes",
    type=click.IntRange(min=1),
    help="Let queries read the view up to this stale (max_staleness); default: always fresh.",
)
@click.option("--name", "names", multiple=True, metavar="FINGERPRINT=VIEW", help="Name a view.")
@click.option("--validate", "do_validate", is_flag=True, help="Create each view, compare rows.")
@click.option(
    "--non-incremental",
    is_flag=True,
    help="Where no incremental view fits but the exact text repeats, propose a "
    "non-incremental one (allow_non_incremental_definition; reads up to max_staleness old).",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True)
@source_options
@click.option("--json", "as_json", is_flag=True, help="Print the proposals as JSON.")
def views(
    source: str,
    project: str,
    api_endpoint: str | None,
    min_runs: int,
    refresh_minutes: int,
    max_staleness_minutes: int | None,
    names: tuple[str, ...],
    do_validate: bool,
    non_incremental: bool,
    timeout: float,
    days: float,
    usd_per_tib: float | None,
    usd_per_slot_hour: float | None,
    workers: int,
    window_days: float | None,
    as_json: bool,
) -> None:
    """Propose (and validate) materialized views for the repeated shapes of SOURCE."""
    named = _names(names)
    _, report = read_report(
        source,
        days=days,
        api_endpoint=api_endpoint,
        timeout=timeout,
        price=price_option(usd_per_tib, usd_per_slot_hour, as_json),
        window_days=window_days,
        as_json=as_json,
        workers=workers,
    )
    refresh = Refresh(True, refresh_minutes, max_staleness_minutes)
    shapes = candidates(report, min_runs)
    client = None
    unknown: dict[str, str] = {}  # base table → why its partitioning is unknown
    try:
        client = make_client(project, api_endpoint)
    except _api_errors() as error:
        if do_validate:
            _output.fail(
                f"BigQuery client: {_first_line(error)}", _output.UNREACHABLE, as_json=as_json
            )
        unknown[""] = _first_line(error)

    def exact(shape: Shape) -> bool:  # the same text, literals included, repeats
        return non_incremental and shape.most_repeated[1] >= min_runs

    verdicts = [
        propose(s.example, project=project, refresh=refresh, non_incremental=exact(s))
        for s in shapes
    ]
    infos: dict[str, TableInfo] = {}
    for verdict in verdicts:
        base = verdict.base_table
        if not verdict.eligible or base in infos or base in unknown:
            continue
        if client is None:
            unknown[base] = unknown[""]
            continue
        try:
            infos[base] = table_info(client, base, timeout)
        except _api_errors() as error:
            if do_validate:
                _output.fail(f"{base}: {_first_line(error)}", _output.UNREACHABLE, as_json=as_json)
            unknown[base] = _first_line(error)
    per_base = Counter(v.base_table for v in verdicts if v.eligible)
    rows = []
    for shape, first in zip(shapes, verdicts, strict=True):
        verdict = first
        if first.eligible:
            base_name = first.base_table.rsplit(".", 1)[1]
            name = named.get(shape.key) or (
                f"{base_name}_mv"
                if per_base[first.base_table] == 1
                else f"{base_name}_{shape.key[:6]}_mv"
            )
            verdict = propose(
                shape.example,
                project=project,
                name=name,
                tables=infos,
                refresh=refresh,
                non_incremental=exact(shape),
            )
            if first.base_table in unknown:
                verdict.notes.append(
                    f"partitioning of {first.base_table} unknown ({unknown[first.base_table]}): "
                    "the view is not partitioned"
                )
        rows.append(_row(report, shape, verdict, client if do_validate else None, timeout))
    textless = sum(
        1
        for s in report.shapes
        if s.count >= min_runs and not s.example and s.statement_type not in NOT_READS
    )
    payload = {
        "source": source,
        "repeated_without_sql": textless,
        "records": report.records,
        "window_days": round(report.window_seconds / 86_400, 6),
        "candidates": len(rows),
        "eligible": sum(r["eligible"] for r in rows),
        "proposals": rows,
    }
    if as_json:
        _output.emit_json(payload)
    else:
        _print(payload)
    if payload["eligible"]:
        raise SystemExit(_output.FINDINGS)


def _row(
    report: Report, shape: Shape, verdict: Verdict, client: Any, timeout: float
) -> dict[str, Any]:
    cost = report.usd_per_month(shape)
    row: dict[str, Any] = {
        "fingerprint": shape.key,
        "sql": shape.sql,
        "example": shape.example,
        "runs": shape.count,
        "usd_per_month": round(cost, 4),
        "call_sites": [site for site, _ in shape.call_sites.most_common(5)],
        **verdict.as_dict(),
        "validation": None,
        "saving_usd_per_month": None,
        "saving_upper_bound_usd_per_month": round(cost, 4) if verdict.eligible else None,
    }
    if verdict.eligible and client is not None:
        check = validate(client, shape.example, verdict, timeout)
        row["validation"] = check.as_dict()
        if check.same_rows and check.original_bytes_billed:
            share = max(0.0, 1 - check.rewritten_bytes_billed / check.original_bytes_billed)
            row["saving_usd_per_month"] = round(cost * share, 4)
    return row


def _print(payload: dict[str, Any]) -> None:
    console = _output.stdout()
    console.print(
        f"{escape(payload['source'])}: {payload['candidates']} repeated read shape(s), "
        f"{payload['eligible']} eligible for a materialized view"
    )
    if payload["repeated_without_sql"]:
        console.print(
            f"[yellow]note:[/] {payload['repeated_without_sql']} repeated shape(s) have no SQL "
            "text to judge: capture it (BASTION_BQ_CAPTURE_QUERY_TEXT=true) or read "
            "bq:PROJECT/REGION"
        )
    if payload["window_days"] < 1:
        console.print(
            f"[yellow]note:[/] $/month extrapolates from {payload['window_days'] * 1440:.3g} "
            "minutes of data; give --window-days if the source covers a longer period"
        )
    table = Table()
    for column in ("Shape", "Runs", "$/month", "Verdict"):
        table.add_column(column)
    for row in payload["proposals"]:
        if row["eligible"]:
            check = row["validation"]
            checked = ""
            if check is not None:
                checked = (
                    f"\n[green]same rows[/]; saves about {usd_text(row['saving_usd_per_month'])}"
                    "/month (refresh not included)"
                    if check["same_rows"] and row["saving_usd_per_month"] is not None
                    else "\n[green]same rows[/]"
                    if check["same_rows"]
                    else f"\n[red]{escape(check['error'] or 'different rows')}[/]"
                )
            verdict = f"[green]eligible[/]: {escape(row['view'])}{checked}"
        else:
            verdict = f"[yellow]not eligible[/]: {escape(row['reason'])}"
        table.add_row(
            escape(row["sql"][:200]), str(row["runs"]), usd_text(row["usd_per_month"]), verdict
        )
    console.print(table)
    for row in payload["proposals"]:
        if row["eligible"]:
            console.print(f"\n[bold]{escape(row['view'])}[/] ({escape(row['fingerprint'])})")
            console.print(escape(row["ddl"]) + ";", soft_wrap=True)
            console.print("[dim]-- the query, reading the view:[/]")
            console.print(escape(row["rewritten"]) + ";", soft_wrap=True)
