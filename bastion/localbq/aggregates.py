"""Statistical aggregates BigQuery has and sqlite lacks, registered on the connection.

``STDDEV`` (= ``STDDEV_SAMP``), ``STDDEV_POP``, ``VARIANCE`` (= ``VAR_SAMP``) and
``VAR_POP``, as BigQuery defines them: NULL inputs ignored; NULL for no input, and
for a single input in the sample forms. sqlglot writes ``VAR_SAMP`` as ``VARIANCE``
and ``VAR_POP`` as ``VARIANCE_POP`` for sqlite; both spellings are registered.
"""

from __future__ import annotations

import math
import sqlite3


class _Moments:
    """Welford's running mean and sum of squared deviations (numerically stable)."""

    sample = True
    root = False

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.squares = 0.0

    def step(self, value: float | None) -> None:
        if value is None:
            return
        self.count += 1
        delta = float(value) - self.mean
        self.mean += delta / self.count
        self.squares += delta * (float(value) - self.mean)

    def finalize(self) -> float | None:
        divisor = self.count - 1 if self.sample else self.count
        if divisor <= 0:
            return None
        variance = max(self.squares / divisor, 0.0)
        return math.sqrt(variance) if self.root else variance


class _VarSamp(_Moments):
    pass


class _VarPop(_Moments):
    sample = False


class _StddevSamp(_Moments):
    root = True


class _StddevPop(_Moments):
    sample = False
    root = True


AGGREGATES: dict[str, type[_Moments]] = {
    "STDDEV": _StddevSamp,
    "STDDEV_SAMP": _StddevSamp,
    "STDDEV_POP": _StddevPop,
    "VARIANCE": _VarSamp,
    "VAR_SAMP": _VarSamp,
    "VAR_POP": _VarPop,
    "VARIANCE_POP": _VarPop,
}


def register(db: sqlite3.Connection) -> None:
    for name, aggregate in AGGREGATES.items():
        # typeshed types aggregates as int -> int; sqlite passes any value through.
        db.create_aggregate(name, 1, aggregate)  # type: ignore[arg-type]
