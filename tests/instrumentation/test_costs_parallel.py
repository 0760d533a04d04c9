"""Large span files read by several processes give the report one process gives, and a
malformed line is reported with its absolute line number."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bastion.instrumentation.costs import parallel
from bastion.instrumentation.costs.pricing import Price
from bastion.instrumentation.costs.records import SourceError, read_file
from bastion.instrumentation.costs.shapes import analyse
from benchmarks.bench_costs import write_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_inputs(tmp_path_factory.mktemp("spans"), 6000)


def test_pieces_start_at_line_starts_and_cover_the_file(inputs: tuple[Path, Path]) -> None:
    jsonl, _ = inputs
    cuts = parallel.pieces(jsonl, 7)
    data = jsonl.read_bytes()
    assert cuts[0][0] == 0 and cuts[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cuts))
    assert all(data[start - 1 : start] == b"\n" for start, _ in cuts[1:])


@pytest.mark.parametrize("which", [0, 1], ids=["json-lines", "otlp-json"])
def test_parallel_report_equals_serial(
    inputs: tuple[Path, Path], which: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = inputs[which]
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    price = Price()
    serial = analyse(read_file(path), price)
    seen: list[int] = []
    both = parallel.analyse_file(path, price, workers=2, progress=seen.append)
    assert sum(seen) == path.stat().st_size  # the progress bar reaches the end
    assert both.records == serial.records and both.window_seconds == serial.window_seconds
    ours = {s.key: serial.shape_dict(s, 3) for s in serial.shapes}
    theirs = {s.key: both.shape_dict(s, 3) for s in both.shapes}
    assert theirs == ours


def test_a_malformed_line_is_reported_with_its_line_number(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = inputs[0].read_bytes().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"".join(lines[:4000]) + b"{not json\n" + b"".join(lines[4000:]))
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    with pytest.raises(SourceError, match=r"broken\.jsonl:4001: not JSON"):
        parallel.analyse_file(broken, Price(), workers=2)
