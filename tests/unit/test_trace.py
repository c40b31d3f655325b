"""The trace file: JSON lines written in blocks with orjson, values spelt as `json.dumps` with
`default=str` spelt them, read back whole, in order, up to the last whole line."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from sim.report import trace as trace_module
from sim.report.trace import Trace, read_trace


@dataclass
class _Point:
    x: int


def _raw(path) -> bytes:
    with gzip.open(path, "rb") as raw:
        return raw.read()


def test_values_are_spelt_as_json_dumps_with_str_spelt_them(tmp_path):
    record = {
        "kind": "probe",
        "at": datetime(2026, 11, 15, 6, 0, 0, 250, tzinfo=UTC),
        "local": datetime(2026, 11, 15, 7, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        "qty": Decimal("1.500000"),
        "tiny": Decimal("1E-7"),
        "point": _Point(1),
        "t": 12.5,
        "none": None,
        "text": 'Zürich \u2013 "quoted"',
    }
    trace = Trace(tmp_path / "trace.jsonl.gz")
    trace._write(record)
    trace.close()
    written = _raw(tmp_path / "trace.jsonl.gz").decode()
    # the same text, but non-ASCII characters are UTF-8 now rather than \u escapes
    expected = json.dumps(record, separators=(",", ":"), default=str, ensure_ascii=False)
    assert written == expected + "\n"
    assert '"at":"2026-11-15 06:00:00.000250+00:00"' in written  # str(), not RFC 3339
    assert '"qty":"1.500000"' in written


def test_records_come_back_in_order_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(trace_module, "BLOCK", 3)
    trace = Trace(tmp_path / "trace.jsonl.gz")
    for n in range(10):
        trace.cover("loss", n)
    trace.sample(60.0, 4, Decimal("12.30"), 2)
    trace.close()
    records = list(read_trace(tmp_path / "trace.jsonl.gz"))
    assert [r["n"] for r in records[:10]] == list(range(10))
    assert records[10] == {
        "kind": "sample", "t": 60.0, "queue_depth": 4, "drift_value": "12.30",
        "drift_exceptions": 2,
    }  # fmt: skip
    lines = _raw(tmp_path / "trace.jsonl.gz").splitlines()
    assert [json.loads(line) for line in lines] == records  # plain JSON lines


def test_nothing_is_lost_before_close_and_a_cut_line_is_dropped(tmp_path):
    path = tmp_path / "trace.jsonl.gz"
    trace = Trace(path)
    trace.cover("loss", 1)
    trace.cover("crash", 2)
    trace.close()
    whole = _raw(path)
    assert whole.count(b"\n") == 2 and whole.endswith(b"\n")
    with gzip.open(path, "wb") as cut:
        cut.write(whole + b'{"kind":"cover","na')
    assert [r["name"] for r in read_trace(path)] == ["loss", "crash"]
