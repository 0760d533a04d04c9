"""The JSON-lines telemetry file, written by the real exporters through the real SDK
providers (no mocks) and read back with the readers every consumer uses."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bastion.instrumentation.jsonl import (
    JsonLinesFile,
    JsonLinesLogExporter,
    JsonLinesMetricExporter,
    JsonLinesSpanExporter,
    MalformedLine,
    log_records,
    metric_points,
    metric_records,
    parse_line,
    read_records,
    record_kind,
    span_records,
)

RESOURCE = Resource.create({"service.name": "prediction-worker"})


def write_run(path: Path) -> str:
    """One span, a counter over two export rounds, a histogram and a log record inside
    the span, through the three exporters into one file; the span's trace id."""
    sink = JsonLinesFile(str(path))
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(sink)))
    reader = PeriodicExportingMetricReader(
        JsonLinesMetricExporter(sink), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(JsonLinesLogExporter(sink)))
    logger = logging.getLogger("tests.jsonl")
    handler = LoggingHandler(logger_provider=logger_provider)
    logger.addHandler(handler)
    try:
        meter = meter_provider.get_meter("tests.jsonl")
        counter = meter.create_counter("bastion.test.cuts", unit="{cut}")
        histogram = meter.create_histogram("bastion.test.seconds", unit="s")
        with tracer_provider.get_tracer("tests.jsonl").start_as_current_span("work") as span:
            counter.add(2, {"bastion.mode": "observe"})
            counter.add(1, {"bastion.mode": "enforce"})
            histogram.record(0.5)
            histogram.record(1.5)
            logger.warning("would cut")
            trace_id = f"0x{span.get_span_context().trace_id:032x}"
        meter_provider.force_flush()
        counter.add(4, {"bastion.mode": "observe"})  # a second delta line
        meter_provider.force_flush()
    finally:
        logger.removeHandler(handler)
        meter_provider.shutdown()
        tracer_provider.shutdown()
        logger_provider.shutdown()
    return trace_id


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    path = tmp_path / "telemetry.jsonl"
    yield path, write_run(path)


def test_the_three_signals_round_trip_through_one_file(run: tuple[Path, str]) -> None:
    path, trace_id = run
    records = list(read_records(path, strict=True))
    kinds = [record_kind(r) for r in records]
    assert set(kinds) == {"span", "metric", "log"}

    (span,) = span_records(records)
    assert span["name"] == "work" and span["context"]["trace_id"] == trace_id
    assert span["resource"]["attributes"]["service.name"] == "prediction-worker"

    (log,) = log_records(path)  # a path works as well as records already read
    assert log["body"] == "would cut" and log["severity_text"] == "WARN"
    assert log["trace_id"] == trace_id  # correlated with the span it was written in

    lines = list(metric_records(records, "bastion.test.cuts"))
    assert len(lines) == 2  # one per export: deltas
    assert {(m["service"], m["temporality"], m["unit"]) for m in lines} == {
        ("prediction-worker", "delta", "{cut}")
    }
    totals: dict[str, float] = {}
    for point in metric_points(records, "bastion.test.cuts"):
        mode = point.attributes["bastion.mode"]
        totals[mode] = totals.get(mode, 0) + point.value
    assert totals == {"observe": 6, "enforce": 1}  # sums over delta lines
    (observed,) = metric_points(path, "bastion.test.seconds")
    assert observed.value == 2  # a histogram point counts its observations


def test_a_torn_last_line_is_skipped_in_both_modes(run: tuple[Path, str]) -> None:
    path, _ = run
    whole = list(read_records(path))
    with path.open("ab") as out:  # a writer killed (or still writing) mid-line
        out.write(b'{"type":"log","body":"cut sho')
    assert list(read_records(path)) == whole
    assert list(read_records(path, strict=True)) == whole


def test_a_whole_last_record_without_its_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"type":"log","body":"a"}\n{"type":"log","body":"b"}')
    assert [r["body"] for r in log_records(path)] == ["a", "b"]


def test_a_bad_line_inside_the_file_is_skipped_or_named_with_strict(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        b'{"type":"log","body":"a"}\n\nnot json\n[1, 2]\n\xff\xfe\n{"type":"log","body":"b"}\n'
    )
    assert [r["body"] for r in read_records(path)] == ["a", "b"]
    with pytest.raises(MalformedLine, match=r"t\.jsonl:3: not JSON \(") as caught:
        list(read_records(path, strict=True))
    assert caught.value.where == f"{path}:3" and caught.value.reason.startswith("not JSON")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'"text"\n', "not a JSON object"),
        (b"\xff\xfe{}\n", "not UTF-8 text"),
        ("{", "not JSON"),
    ],
)
def test_parse_line_says_why_a_line_is_not_a_record(line: bytes | str, reason: str) -> None:
    with pytest.raises(MalformedLine) as caught:
        parse_line(line)
    assert caught.value.reason.startswith(reason) and caught.value.where == ""


def test_parse_line_reads_bytes_and_text_alike() -> None:
    assert parse_line(b'{"a": [1]}\n') == parse_line('{"a": [1]}') == {"a": [1]}


def test_record_kinds_and_types_this_module_does_not_write(tmp_path: Path) -> None:
    assert record_kind({"name": "GET /", "context": {}}) == "span"
    assert record_kind({"type": "metric"}) == "metric"
    assert record_kind({"type": "log"}) == "log"
    assert record_kind({"type": "event"}) is None
    records = [{"type": "event", "name": "x"}, {"type": "log", "body": "b"}]
    assert list(span_records(records)) == [] and list(metric_records(records)) == []
    assert [r["body"] for r in log_records(records)] == ["b"]


def test_a_missing_file_is_an_error_not_an_empty_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_records(tmp_path / "missing.jsonl"))
