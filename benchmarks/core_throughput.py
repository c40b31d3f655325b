"""Throughput of `Core.submit` against the raw floor of the same work, printed as one JSON object.

    python benchmarks/core_throughput.py [--messages 30000] [--repeat 1] [--profile FILE]
                                         [--baseline REV] [--group 1]

What is measured (the issue's spec):

* core: `Core.submit(raw_json)` for a realistic shop-floor mix -- a material issue, an operation
  completion that backflushes 5 components, and a finished-goods receipt, in that rhythm, one
  work order per ~50 messages -- on SQLite `:memory:` and on a WAL file in a temporary
  directory. Only the submit loop is timed; master data, work-order releases and the purchase
  receipts that put the backflushed stock on hand are posted beforehand, and every envelope is
  pre-built as the JSON text a service would receive.
* floor: for the same envelopes, `Envelope.model_validate_json` plus, in one transaction per
  message, the same rows the core run wrote for that message -- one inbox row, its journal
  entry header (the journal lines reference it under `PRAGMA foreign_keys=ON`), and exactly as
  many journal_line and stock_move rows, with the same values -- on a store of the same schema
  and pragmas. Row values are read back from the core run and pre-built before timing, so the
  floor is "validate, then insert what must be inserted" with no bookkeeping at all.

* `--group N`: N messages per transaction for the core (`Core.transaction()`, as `twin run`'s
  in-process target groups 1,000) and for the floor alike; 1 (the default) is a transaction
  per message, as a service without group commit.
* side by side (`--baseline REV`, e.g. `HEAD` to measure uncommitted changes): the core runs
  again, this checkout's and git revision REV's, each in a fresh subprocess, alternately, on
  the same machine load (see side_by_side.py); `side_by_side.speedup_*` = baseline time /
  this checkout's time, by wall clock and by CPU time (`_cpu`).

`ratio_*` = core messages/s / floor messages/s. Targets: >= 10,000 messages/s in memory and a
ratio of >= 0.30 (aim 0.50).

Deterministic: the same master data and messages on every run; no seed. Self-contained: it
builds its own plant network (benchmarks/workload.py, shared with service_throughput.py) rather
than importing the test builders.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pydantic
from checkout import import_from_source_only, source_revision
from ledger_columns import ENTRY_COLUMNS, INBOX_COLUMNS, LINE_COLUMNS, MOVE_COLUMNS
from side_by_side import KINDS, SideBySide
from workload import START, Workload, build_settings, build_workload, mix_shape

from integration import Core, Envelope, ManualClock, SqliteStore, open_store

TARGET_MEMORY_MESSAGES_PER_S = 10_000
TARGET_RATIO_MIN = 0.30
TARGET_RATIO_AIM = 0.50


# --- the core run --------------------------------------------------------------------------
def new_core(path: str, workload: Workload) -> Core:
    core = Core(build_settings(), open_store(path), ManualClock(START + timedelta(days=1)))
    for raw in workload.setup_messages:
        outcome = core.submit(raw)
        if outcome.status.value != "POSTED":
            raise SystemExit(f"setup message not posted: {outcome}")
    return core


def groups(items: list, size: int) -> list[list]:
    """`items` in consecutive groups of `size` (the last may be shorter)."""
    return [items[n : n + size] for n in range(0, len(items), size)]


def run_core(path: str, workload: Workload, group: int = 1) -> tuple[Core, float, float]:
    """A core with the setup posted, then the timed submit loop, `group` messages per
    `Core.transaction()` (1: each submit its own): (core, wall s, CPU s)."""
    core = new_core(path, workload)
    submit, transaction = core.submit, core.transaction
    timed = groups(workload.timed, group)
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    for block in timed:
        if group == 1:
            submit(block[0])
            continue
        with transaction():
            for raw in block:
                submit(raw)
    return core, time.perf_counter() - start, time.process_time() - start_cpu


def check_core(core: Core, workload: Workload) -> dict:
    """After timing: every timed message posted, the books reconcile, no stock went negative."""
    db = core.store.connection
    statuses = dict(db.execute("SELECT status, COUNT(*) FROM inbox GROUP BY status"))
    expected = workload.setup_count + len(workload.timed)
    reconciliation = core.reconcile()
    exceptions = core.store.stock_exception_count()
    dead = db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
    if statuses != {"POSTED": expected} or dead or exceptions or not reconciliation.ok:
        raise SystemExit(
            f"the core run did not post cleanly: statuses={statuses} expected={expected} "
            f"dead_letters={dead} stock_exceptions={exceptions} reconciliation={reconciliation}"
        )
    return {
        "all_posted": True,
        "reconciled": True,
        "stock_exceptions": exceptions,
        "entries_checked": reconciliation.entries_checked,
    }


# --- the floor -----------------------------------------------------------------------------
INSERT_INBOX = f"INSERT INTO inbox ({INBOX_COLUMNS}) VALUES ({', '.join('?' * 23)})"
INSERT_ENTRY = (
    f"INSERT INTO journal_entry (inbox_id, {ENTRY_COLUMNS}) VALUES ({', '.join('?' * 11)})"
)
INSERT_LINE = f"INSERT INTO journal_line (entry_id, {LINE_COLUMNS}) VALUES ({', '.join('?' * 8)})"
INSERT_MOVE = f"INSERT INTO stock_move (entry_id, {MOVE_COLUMNS}) VALUES ({', '.join('?' * 8)})"

# Per message: (inbox row, [(entry row, [line rows], [move rows]), ...])
MessageRows = tuple[tuple, list[tuple[tuple, list[tuple], list[tuple]]]]


def rows_per_message(db: sqlite3.Connection) -> list[MessageRows]:
    """Every inbox row of a finished core run with its entries, lines and moves, in order."""
    lines: dict[int, list[tuple]] = {}
    for row in db.execute(
        f"SELECT entry_id, {LINE_COLUMNS} FROM journal_line ORDER BY entry_id, line_no"
    ):
        lines.setdefault(row[0], []).append(row[1:])
    moves: dict[int, list[tuple]] = {}
    for row in db.execute(f"SELECT entry_id, {MOVE_COLUMNS} FROM stock_move ORDER BY move_id"):
        moves.setdefault(row[0], []).append(row[1:])
    entries: dict[int, list] = {}
    for row in db.execute(
        f"SELECT entry_id, inbox_id, {ENTRY_COLUMNS} FROM journal_entry ORDER BY entry_id"
    ):
        entry_id, inbox_id = row[0], row[1]
        entries.setdefault(inbox_id, []).append(
            (row[2:], lines.get(entry_id, []), moves.get(entry_id, []))
        )
    return [
        (row[1:], entries.get(row[0], []))
        for row in db.execute(f"SELECT inbox_id, {INBOX_COLUMNS} FROM inbox ORDER BY inbox_id")
    ]


def _insert(db: sqlite3.Connection, message: MessageRows) -> None:
    inbox, entries = message
    inbox_id = db.execute(INSERT_INBOX, inbox).lastrowid
    for entry, lines, moves in entries:
        entry_id = db.execute(INSERT_ENTRY, (inbox_id, *entry)).lastrowid
        db.executemany(INSERT_LINE, [(entry_id, *line) for line in lines])
        db.executemany(INSERT_MOVE, [(entry_id, *move) for move in moves])


def run_floor(path: str, workload: Workload, rows: list[MessageRows], group: int = 1) -> float:
    """Validate each envelope, then write its rows, `group` messages per transaction; returns
    the wall time."""
    store = SqliteStore(path)  # the same schema and pragmas as the core's store
    db = store.connection
    setup_rows, timed_rows = rows[: workload.setup_count], rows[workload.setup_count :]
    db.execute("BEGIN IMMEDIATE")
    for message in setup_rows:  # the same starting state as the core run, untimed
        _insert(db, message)
    db.execute("COMMIT")
    validate = Envelope.model_validate_json
    execute, executemany = db.execute, db.executemany
    work = groups(list(zip(workload.timed, timed_rows, strict=True)), group)
    gc.collect()
    start = time.perf_counter()
    for block in work:
        execute("BEGIN IMMEDIATE")
        for raw, (inbox, entries) in block:
            validate(raw)
            inbox_id = execute(INSERT_INBOX, inbox).lastrowid
            for entry, lines, moves in entries:
                entry_id = execute(INSERT_ENTRY, (inbox_id, *entry)).lastrowid
                executemany(INSERT_LINE, [(entry_id, *line) for line in lines])
                executemany(INSERT_MOVE, [(entry_id, *move) for move in moves])
        execute("COMMIT")
    wall = time.perf_counter() - start
    written = db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
    if written != len(rows):
        raise SystemExit(f"floor wrote {written} inbox rows, expected {len(rows)}")
    store.close()
    return wall


def run_validate_only(workload: Workload) -> float:
    validate = Envelope.model_validate_json
    gc.collect()
    start = time.perf_counter()
    for raw in workload.timed:
        validate(raw)
    return time.perf_counter() - start


# --- the core alone, for side_by_side.py -------------------------------------------------
def core_only(messages: int, directory: str | None, group: int) -> int:
    """The core runs alone: {kind: {"wall": s, "cpu": s}} as JSON on stdout."""
    workload = build_workload(messages)
    times = {}
    with tempfile.TemporaryDirectory(prefix="core-bench-", dir=directory) as tmp:
        paths = (":memory:", str(Path(tmp) / "core.sqlite"))
        for kind, path in zip(KINDS, paths, strict=True):
            core, wall, cpu = run_core(path, workload, group)
            check_core(core, workload)
            core.close()
            times[kind] = {"wall": wall, "cpu": cpu}
    print(json.dumps(times))
    return 0


# --- reporting -----------------------------------------------------------------------------
def _rate(messages: int, wall: float) -> dict:
    return {
        "messages_per_s": round(messages / wall, 1),
        "wall_s": round(wall, 4),
        "us_per_message": round(wall / messages * 1e6, 2),
    }


def _best(walls: list[float]) -> float:
    return min(walls)


def mix_summary(workload: Workload, timed_rows: list[MessageRows]) -> dict:
    by_type: dict[str, dict] = {}
    for kind, (_inbox, entries) in zip(workload.kinds, timed_rows, strict=True):
        stats = by_type.setdefault(
            kind, {"messages": 0, "journal_entries": 0, "journal_lines": 0, "stock_moves": 0}
        )
        stats["messages"] += 1
        stats["journal_entries"] += len(entries)
        stats["journal_lines"] += sum(len(lines) for _e, lines, _m in entries)
        stats["stock_moves"] += sum(len(moves) for _e, _l, moves in entries)
    for stats in by_type.values():
        n = stats["messages"]
        stats["journal_lines_per_message"] = round(stats["journal_lines"] / n, 3)
        stats["stock_moves_per_message"] = round(stats["stock_moves"] / n, 3)
    totals = Counter()
    for stats in by_type.values():
        totals.update(
            {k: stats[k] for k in ("messages", "journal_entries", "journal_lines", "stock_moves")}
        )
    return {
        "by_type": by_type,
        "totals": dict(totals),
        **mix_shape(workload),
        "streams": False,
    }


def profile_core(workload: Workload, destination: str) -> None:
    """An extra, untimed-for-the-report in-memory core run under cProfile: top 20 cumulative
    to stderr, the raw stats to `destination`."""
    core = new_core(":memory:", workload)
    submit = core.submit
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    for raw in workload.timed:
        submit(raw)
    profiler.disable()
    core.close()
    profiler.dump_stats(destination)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(20)
    print(out.getvalue(), file=sys.stderr)


def filesystem_of(path: str) -> str | None:
    """The filesystem type holding `path` (Linux /proc/mounts), e.g. ext4 or tmpfs."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    real, best, kind = os.path.realpath(path), "", None
    for mount in mounts:
        fields = mount.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000, help="timed messages per run")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each measurement; the fastest is reported"
    )
    parser.add_argument(
        "--dir", default=None, help="where the WAL-file databases go (default: the system temp dir)"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        default=None,
        help="also profile an in-memory core run (cProfile stats to FILE, "
        "top 20 cumulative to stderr); not part of the figures",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        default=None,
        help="also time this checkout's core and that of git revision REV (e.g. HEAD, for "
        "uncommitted changes) side by side: `side_by_side` in the report",
    )
    parser.add_argument(
        "--group",
        type=int,
        default=1,
        help="messages per transaction, for the core (Core.transaction) and the floor alike; "
        "1000 is what `twin run`'s in-process target groups",
    )
    parser.add_argument("--core-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.messages < 1 or args.repeat < 1 or args.group < 1:
        parser.error("--messages, --repeat and --group must be at least 1")
    if args.core_only:
        import_from_source_only()
        return core_only(args.messages, args.dir, args.group)

    workload = build_workload(args.messages)
    n = len(workload.timed)
    core_memory, core_wal, floor_memory, floor_wal, validate_only = [], [], [], [], []
    rows: list[MessageRows] | None = None
    checks = None
    with tempfile.TemporaryDirectory(prefix="core-bench-", dir=args.dir) as tmp:
        wal_fs = filesystem_of(tmp)
        side = SideBySide(__file__, args.baseline, Path(tmp)) if args.baseline else None
        for r in range(args.repeat):
            core, wall, _cpu = run_core(":memory:", workload, args.group)
            core_memory.append(wall)
            if rows is None:
                checks = check_core(core, workload)
                rows = rows_per_message(core.store.connection)
            core.close()

            wal_path = str(Path(tmp) / f"core-{r}.sqlite")
            core, wall, _cpu = run_core(wal_path, workload, args.group)
            core_wal.append(wall)
            check_core(core, workload)
            if rows_per_message(core.store.connection) != rows:
                raise SystemExit("the WAL-file run wrote other rows than the in-memory run")
            core.close()
            if side is not None:
                side.run(r, args.messages, tmp, args.group)

            floor_memory.append(run_floor(":memory:", workload, rows, args.group))
            floor_wal.append(
                run_floor(str(Path(tmp) / f"floor-{r}.sqlite"), workload, rows, args.group)
            )
            validate_only.append(run_validate_only(workload))

    memory, wal = _rate(n, _best(core_memory)), _rate(n, _best(core_wal))
    f_memory, f_wal = _rate(n, _best(floor_memory)), _rate(n, _best(floor_wal))
    ratio_memory = memory["messages_per_s"] / f_memory["messages_per_s"]
    ratio_wal = wal["messages_per_s"] / f_wal["messages_per_s"]
    report = {
        "messages": n,
        "repeat": args.repeat,
        "messages_per_transaction": args.group,
        "mix": mix_summary(workload, rows[workload.setup_count :]),
        "memory": memory,
        "wal_file": wal,
        "floor_memory": f_memory,
        "floor_wal_file": f_wal,
        "validate_only": _rate(n, _best(validate_only)),
        "ratio_memory": round(ratio_memory, 4),
        "ratio_wal_file": round(ratio_wal, 4),
        "target": {
            "memory_messages_per_s": TARGET_MEMORY_MESSAGES_PER_S,
            "ratio_min": TARGET_RATIO_MIN,
            "ratio_aim": TARGET_RATIO_AIM,
            "memory_met": memory["messages_per_s"] >= TARGET_MEMORY_MESSAGES_PER_S,
            "ratio_memory_met": ratio_memory >= TARGET_RATIO_MIN,
        },
        "checks": checks,
        "floor_definition": (
            "per --group messages: BEGIN IMMEDIATE; for each, Envelope.model_validate_json, "
            "1 inbox row, its journal_entry header(s), the same journal_line and stock_move "
            "rows the core wrote for that message; COMMIT"
        ),
        "wal_file_pragmas": "journal_mode=WAL, synchronous=NORMAL (SqliteStore defaults)",
        "wal_file_filesystem": wal_fs,
        "revision": source_revision("integration"),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "pydantic": pydantic.VERSION,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    if side is not None:
        report["side_by_side"] = side.report(n)
    print(json.dumps(report, indent=2))
    if args.profile:
        profile_core(workload, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
