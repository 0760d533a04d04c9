"""Shared plumbing of the ``bastion`` commands: exit codes, consoles, JSON output.

Exit codes (the same for every command):

* ``0`` success;
* ``1`` the command ran and found something: a score under ``--min-score``, settings
  with validation errors, tables missing ``require_partition_filter``;
* ``2`` usage or input error: bad option, unreadable or malformed file (click's own
  usage errors also exit 2);
* ``3`` the target could not be examined: unreachable, TLS failure, not HTTP,
  non-2xx answer, BigQuery API error.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

OK = 0
FINDINGS = 1
USAGE = 2
UNREACHABLE = 3


def stdout() -> Console:
    # Built per call so that click's CliRunner (which swaps sys.stdout) captures it.
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=_width())


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False, width=_width())


def _width() -> int | None:
    return None if sys.stdout.isatty() else 120


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))


def fail(message: str, exit_code: int, *, as_json: bool = False) -> NoReturn:
    """Stop with a clear one-line ``message`` and ``exit_code`` (never a traceback);
    with ``--json`` also print ``{"error": ..., "exit_code": ...}`` on stdout."""
    if as_json:
        emit_json({"error": message, "exit_code": exit_code})
    stderr().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise click.exceptions.Exit(exit_code)
