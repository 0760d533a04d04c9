"""The ``bastion`` command: ``doctor``, ``scan``, ``audit-partitions``, ``queries``, ``views``.

Every subcommand prints rich tables for people and, with ``--json``, one JSON
document for scripts. Exit codes are shared (see :mod:`bastion.cli._output`):
0 success, 1 findings, 2 usage/input error, 3 target unreachable or unusable.
"""

from __future__ import annotations

try:
    import click
    import html5lib  # noqa: F401
    import httpx  # noqa: F401
    import rich  # noqa: F401
except ModuleNotFoundError as error:  # the extra is not installed
    from bastion._extras import MissingExtra

    raise MissingExtra("cli", "the bastion command", error) from error

from bastion.cli.audit import audit_partitions
from bastion.cli.doctor import doctor
from bastion.cli.queries import queries
from bastion.cli.scan import scan
from bastion.cli.views import views

__all__ = ["main"]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 success; 1 findings (low score, invalid settings, tables "
    "without require_partition_filter, materialized views proposed); 2 usage or input "
    "error; 3 target unreachable or unusable (network, TLS, not HTTP, non-2xx, BigQuery API).",
)
@click.version_option(package_name="bastion", prog_name="bastion")
def main() -> None:
    """Check a Bastion deployment: settings, headers, BigQuery partitions, query costs."""


main.add_command(doctor)
main.add_command(scan)
main.add_command(audit_partitions)
main.add_command(queries)
main.add_command(views)
