"""``bastion queries SOURCE``: what each BigQuery query shape costs, per month.

SOURCE is Bastion's JSON-lines telemetry file, an OTLP JSON file of the Collector's
``file`` exporter, or ``bq:PROJECT/REGION`` (the project's
``INFORMATION_SCHEMA.JOBS`` over ``--days``); see :mod:`bastion.instrumentation.costs`.

Each shape (one statement as written in code: literals, ``IN`` lists and generated
table suffixes normalised) reports runs, bytes billed, dollars observed and per month
(``--usd-per-tib``, default BigQuery's US on-demand list price; or
``--usd-per-slot-hour``), p50/p95 duration, the normalised SQL, its tables, call
sites, services and routes, and two flags:

* **unfiltered**: some run scanned a partitioned table without a partition filter
  (see ``bastion audit-partitions --impact``);
* **repeated**: the exact same SQL text ran at least ``--repeat-threshold`` times, and
  it is a read without query parameters: a materialized view, a scheduled table or an
  application cache would serve it (``--views`` proposes the view).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.cli import _output
from bastion.instrumentation.costs.parallel import analyse_file, default_workers
from bastion.instrumentation.costs.pricing import DAYS_PER_MONTH, Price
from bastion.instrumentation.costs.records import SYSTEM, SourceError
from bastion.instrumentation.costs.shapes import Report, Shape, analyse
from bastion.instrumentation.costs.sources import Source, SourceUnreachable

_SORTS: dict[str, Callable[[Shape], tuple[float, ...]]] = {
    "bytes": lambda s: (s.bytes_billed, s.slot_ms, s.count, s.p(0.95)),
    "count": lambda s: (s.count, s.bytes_billed, s.p(0.95)),
    "p95": lambda s: (s.p(0.95), s.bytes_billed, s.count),
}


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that reads a SOURCE."""
    for option in reversed(
        [
            click.option(
                "--days",
                type=click.FloatRange(min=0.001),
                default=30.0,
                show_default=True,
                help="bq:PROJECT/REGION sources: the job-history window.",
            ),
            click.option(
                "--usd-per-tib",
                type=click.FloatRange(min=0),
                help="On-demand price per TiB billed (default: 6.25, US multi-region list "
                "price since 2023-07-05).",
            ),
            click.option(
                "--usd-per-slot-hour",
                type=click.FloatRange(min=0),
                help="Capacity (editions) price: cost from slot time instead of bytes.",
            ),
            click.option(
                "--workers",
                type=click.IntRange(min=1),
                default=default_workers(),
                show_default=True,
                help="Processes reading a span file of 64 MiB or more.",
            ),
            click.option(
                "--window-days",
                type=click.FloatRange(min=0.001),
                help="Days the source covers, for the monthly figures (default: a job "
                "history's --days, a file's first to last record).",
            ),
        ]
    ):
        command = option(command)
    return command


def price_option(
    usd_per_tib: float | None, usd_per_slot_hour: float | None, as_json: bool
) -> Price:
    """The price the options ask for (one model at a time)."""
    if usd_per_tib is not None and usd_per_slot_hour is not None:
        _output.fail(
            "give --usd-per-tib (on-demand) or --usd-per-slot-hour (editions), not both",
            _output.USAGE,
            as_json=as_json,
        )
    return Price.of(usd_per_tib, usd_per_slot_hour)


def read_report(
    spec: str,
    *,
    days: float,
    api_endpoint: str | None,
    timeout: float,
    price: Price,
    window_days: float | None,
    as_json: bool,
    workers: int = 1,
) -> tuple[Source, Report]:
    """Read SOURCE into a report, with a progress bar; exits 2/3 on a bad source."""
    try:
        source = Source.parse(spec, days=days, api_endpoint=api_endpoint, timeout=timeout)
    except SourceError as error:
        _output.fail(str(error), _output.USAGE, as_json=as_json)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}" if source.size is None else "{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_output.stderr(), transient=True, disable=as_json) as bar:
        task = bar.add_task(f"reading {spec}", total=source.size)
        window = window_days * 86_400 if window_days else source.window_seconds
        try:
            if source.path is not None:
                report = analyse_file(
                    source.path,
                    price,
                    workers=workers,
                    window_seconds=window,
                    progress=lambda size: bar.advance(task, size),
                )
            else:
                report = analyse(
                    source.records(lambda size: bar.advance(task, size)), price, window
                )
        except SourceError as error:
            _output.fail(str(error), _output.USAGE, as_json=as_json)
        except SourceUnreachable as error:
            _output.fail(str(error), _output.UNREACHABLE, as_json=as_json)
    if not report.records and source.path is not None:
        _output.fail(
            f"{spec}: no BigQuery spans (db.system.name={SYSTEM}); was the file written "
            "with the BigQuery instrumentor enabled?",
            _output.USAGE,
            as_json=as_json,
        )
    return source, report


@click.command("queries")
@click.argument("source")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--sort", "sort_by", type=click.Choice(sorted(_SORTS)), default="bytes", show_default=True
)
@click.option(
    "--repeat-threshold",
    type=click.IntRange(min=2),
    default=3,
    show_default=True,
    help="Runs of the exact same SQL that flag a shape as repeated.",
)
@source_options
@click.option("--api-endpoint", metavar="URL", help="BigQuery REST endpoint (a local server).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds allowed for the job-history query.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ranking as JSON.")
def queries(
    source: str,
    top: int,
    sort_by: str,
    repeat_threshold: int,
    days: float,
    usd_per_tib: float | None,
    usd_per_slot_hour: float | None,
    workers: int,
    window_days: float | None,
    api_endpoint: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Rank the BigQuery query shapes of SOURCE by cost.

    SOURCE: a JSON-lines or OTLP JSON span file, or bq:PROJECT/REGION (the project's
    INFORMATION_SCHEMA.JOBS over --days)."""
    price = price_option(usd_per_tib, usd_per_slot_hour, as_json)
    _, report = read_report(
        source,
        days=days,
        api_endpoint=api_endpoint,
        timeout=timeout,
        price=price,
        window_days=window_days,
        as_json=as_json,
        workers=workers,
    )
    ranked = sorted(report.shapes, key=_SORTS[sort_by], reverse=True)[:top]
    rows = [report.shape_dict(shape, repeat_threshold) for shape in ranked]
    summary = {
        "source": source,
        "spans": report.records,
        "records": report.records,
        "shapes": len(report.shapes),
        "window_days": round(report.window_seconds / 86_400, 6),
        "price": price.as_dict(),
        "usd": round(report.total_usd, 6),
        "usd_per_month": round(
            sum(report.usd_per_month(s) for s in report.shapes),
            4,
        ),
        "sort": sort_by,
    }
    if as_json:
        _output.emit_json({**summary, "top": rows})
        return
    _print(summary, rows)


def bytes_text(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def usd_text(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


def _print(summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    console = _output.stdout()
    days = summary["window_days"]
    console.print(
        f"{escape(summary['source'])}: {summary['records']} BigQuery jobs, "
        f"{summary['shapes']} query shapes over {days:.3g} days; "
        f"{usd_text(summary['usd'])} observed, about {usd_text(summary['usd_per_month'])} "
        f"per month ({DAYS_PER_MONTH:.2f} days)"
    )
    console.print(f"[dim]price: {escape(summary['price']['source'])}[/]")
    if days < 1:
        console.print(
            f"[yellow]note:[/] the monthly figures extrapolate from {days * 1440:.3g} minutes "
            "of data; give --window-days if the source covers a longer period"
        )
    table = Table()
    for column, justify in (
        ("#", "right"),
        ("Shape", "left"),
        ("Runs", "right"),
        ("Billed", "right"),
        ("$/month", "right"),
        ("p95", "right"),
        ("Flags", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for rank, row in enumerate(rows, 1):
        flags = []
        if row["unfiltered_tables"]:
            flags.append("[red]unfiltered:[/] " + escape(", ".join(row["unfiltered_tables"])))
        if row["repeated"]:
            cached = f", {row['cache_hits']} from BigQuery's cache" if row["cache_hits"] else ""
            flags.append(
                f"[yellow]repeated:[/] same SQL x{row['most_repeated_count']}{cached} "
                "(materialized view / cache candidate)"
            )
        label = row["sql"] or row["summary"] or row["fingerprint"]
        details = [f"[dim]{escape(row['fingerprint'][:16])}[/]"]
        if row["tables"]:
            details.append("tables: " + escape(", ".join(row["tables"][:4])))
        if row["call_sites"]:
            details.append("at: " + escape(", ".join(row["call_sites"][:3])))
        if row["services"]:
            details.append("services: " + escape(", ".join(row["services"][:4])))
        table.add_row(
            str(rank),
            escape(label[:300]) + "\n" + "\n".join(details),
            f"{row['count']}" + (f" ({row['errors']} err)" if row["errors"] else ""),
            bytes_text(row["bytes_billed"]),
            usd_text(row["usd_per_month"]),
            f"{row['p95_seconds']:.3f} s",
            "\n".join(flags),
        )
    console.print(table)
