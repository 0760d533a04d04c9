"""Large span files analysed by several processes, each over a byte range of the file.

The file is cut at line starts into a few pieces per worker; each worker (a fresh
``spawn`` process: nothing of the parent's state is shared) streams its pieces through
:func:`~bastion.instrumentation.costs.shapes.analyse` and returns shapes, which the parent
folds together (:func:`~bastion.instrumentation.costs.shapes.combine`). Memory stays bounded
per process; the parent's progress bar advances piece by piece. A malformed line is
reported as the serial reader reports it (file and absolute line number): the parent
re-reads the file serially up to the error.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from bastion.instrumentation.costs.pricing import Price
from bastion.instrumentation.costs.records import SourceError, read_file
from bastion.instrumentation.costs.shapes import Report, analyse, combine

#: Below this size a file is read in this process: starting spawn workers, each importing
#: the analysis afresh, costs more than they save (figures: benchmarks/RESULTS.md).
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
PIECES_PER_WORKER = 8


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def pieces(path: Path, count: int) -> list[tuple[int, int]]:
    """``count`` (or fewer) byte ranges of ``path``, each starting at a line start."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as handle:
        for index in range(1, count):
            handle.seek(max(size * index // count, cuts[-1]))
            handle.readline()  # to the start of the next line
            position = handle.tell()
            if position >= size:
                break
            if position > cuts[-1]:
                cuts.append(position)
    cuts.append(size)
    return list(itertools.pairwise(cuts))


def _analyse_piece(path: str, start: int, end: int, price: Price) -> Report:
    return analyse(read_file(Path(path), start=start, end=end), price)


def analyse_file(
    path: Path,
    price: Price,
    *,
    workers: int,
    window_seconds: float | None = None,
    progress: Callable[[int], object] | None = None,
) -> Report:
    """The report of a span file, read by ``workers`` processes when it is large."""
    if workers <= 1 or path.stat().st_size < PARALLEL_MIN_BYTES:
        return analyse(read_file(path, progress), price, window_seconds)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(_analyse_piece, str(path), start, end, price): end - start
            for start, end in pieces(path, workers * PIECES_PER_WORKER)
        }
        try:
            for future in as_completed(futures):
                future.result()
                if progress is not None:
                    progress(futures[future])
            # Folded in file order: the first example of a shape is the serial reader's.
            parts = [future.result() for future in futures]
        except SourceError:
            for future in futures:
                future.cancel()
            for _ in read_file(path):  # raises the error with its absolute line number
                pass
            raise
    return combine(parts, price, window_seconds)
