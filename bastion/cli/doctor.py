"""``bastion doctor``: the effective settings, where each came from, every error, and
warnings for valid settings that do not do what they seem to ask for (exit status 0).

It reads the same variables the service reads at startup (:meth:`Settings.collect`),
so a value that would stop the service is reported here first, all errors at once.
``--settings module:attr`` loads a :class:`~bastion.settings.Settings` built in the
service's code (or a function returning one), so values set in code show as ``code``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from bastion.cli import _output
from bastion.settings import FlagError, Settings, SettingsError, flag_table, render


def _load(spec: str) -> tuple[Settings | None, list[FlagError]]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        _output.fail(f"--settings {spec!r}: expected module:attribute", _output.USAGE)
    try:
        found: Any = getattr(importlib.import_module(module_name), attr)
        if callable(found) and not isinstance(found, Settings):
            found = found()
    except SettingsError as error:
        return None, error.errors
    except (ImportError, AttributeError) as error:
        _output.fail(f"--settings {spec!r}: {error}", _output.USAGE)
    except Exception as error:  # the service's own code failed: say so, no traceback
        _output.fail(f"--settings {spec!r} raised {type(error).__name__}: {error}", _output.USAGE)
    if not isinstance(found, Settings):
        _output.fail(
            f"--settings {spec!r} is a {type(found).__name__}, not Settings", _output.USAGE
        )
    return found, []


def diagnose(settings: Settings | None, errors: list[FlagError]) -> dict[str, Any]:
    """The doctor's findings as plain data (what ``--json`` prints)."""
    bad = {error.name: error for error in errors}
    effective = settings.as_env() if settings is not None else {}
    rows = []
    for variable, default, doc in flag_table():
        if settings is not None:
            value, source = effective[variable], settings.sources.get(variable, "default")
        elif variable in os.environ:
            value, source = os.environ[variable], "env"
        else:
            value, source = default, "default"
        if variable in bad:
            value = render(bad[variable].value)
        rows.append(
            {
                "variable": variable,
                "value": value,
                "source": source,
                "default": default,
                "valid": variable not in bad,
                "doc": doc,
            }
        )
    return {
        "valid": not errors,
        "warnings": settings.warnings() if settings is not None else [],
        "settings": rows,
        "errors": [
            {
                "variable": e.name,
                "value": render(e.value),
                "allowed": e.allowed,
                "reason": e.reason,
                "message": str(e),
            }
            for e in errors
        ],
    }


@click.command("doctor")
@click.option(
    "--settings",
    "settings_spec",
    metavar="MODULE:ATTR",
    help="A Settings object (or a function returning one) built in the service's code.",
)
@click.option("--changed", is_flag=True, help="Show only values that differ from the default.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(settings_spec: str | None, changed: bool, as_json: bool) -> None:
    """Print the effective Bastion settings and every validation error."""
    if settings_spec:
        settings, errors = _load(settings_spec)
    else:
        settings, errors = Settings.collect()
    report = diagnose(settings, errors)
    if as_json:
        _output.emit_json(report)
    else:
        _print(report, changed)
    if errors:
        raise SystemExit(_output.FINDINGS)


def _print(report: dict[str, Any], changed: bool) -> None:
    console = _output.stdout()
    table = Table(title="Bastion settings")
    table.add_column("Variable", no_wrap=True)
    table.add_column("Value")
    table.add_column("Source")
    table.add_column("Meaning")
    for row in report["settings"]:
        if changed and row["source"] == "default" and row["valid"]:
            continue
        value = escape(row["value"]) or "[dim](empty)[/]"
        if not row["valid"]:
            value = f"[bold red]{value}[/]"
        source = {"env": "[cyan]env[/]", "code": "[magenta]code[/]"}.get(row["source"], "default")
        table.add_row(row["variable"], value, source, escape(row["doc"]))
    console.print(table)
    for warning in report["warnings"]:
        console.print(f"  [yellow]![/] {escape(warning)}")
    if report["errors"]:
        console.print(f"[bold red]{len(report['errors'])} invalid setting(s):[/]")
        for error in report["errors"]:
            console.print(f"  [red]✗[/] {escape(error['message'])}")
    else:
        console.print("[green]settings are valid[/]")
