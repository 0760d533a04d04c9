"""``bastion`` / ``python -m bastion``: the command line (the ``cli`` extra)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run :func:`bastion.cli.main`, or say which extra to install when it is missing."""
    from bastion._extras import MissingExtra

    try:
        from bastion.cli import main as cli
    except MissingExtra as error:
        sys.exit(f"bastion: {error}")
    cli()


if __name__ == "__main__":
    main()
