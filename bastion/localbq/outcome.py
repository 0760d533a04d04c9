"""What running a statement produced: rows, DML counts, DDL effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catalog import Table


@dataclass
class Outcome:
    """What one statement (or the last one of a script) produced."""

    schema: list[dict[str, Any]] | None = None
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    dml: dict[str, int] | None = None
    ddl_operation: str | None = None
    ddl_target: Table | None = None

    @property
    def affected_rows(self) -> int | None:
        return None if self.dml is None else sum(self.dml.values())
