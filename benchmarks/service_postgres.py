"""PostgreSQL for the service benchmark: store URLs and scratch schemas, and the raw floor --
the rows a service run wrote (inbox, journal_entry, journal_line and stock_move, read back with
their ids) inserted with psycopg `executemany` (or COPY) into a scratch schema of the same DDL,
one transaction per N messages, with no validation and no bookkeeping."""

from __future__ import annotations

import gc
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ledger_columns import ENTRY_COLUMNS, INBOX_COLUMNS, LINE_COLUMNS, MOVE_COLUMNS


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def pg_base(url: str) -> str:
    """The URL without `schema=` (not a libpq parameter)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def pg_connect(url: str, schema: str | None = None):
    import psycopg
    from psycopg import sql

    db = psycopg.connect(pg_base(url), autocommit=True)
    if schema is not None:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return db


def drop_schema(pg_url: str, schema: str | None) -> None:
    if schema is None:
        return
    from psycopg import sql

    with pg_connect(pg_url) as db:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def schema_name(tag: str) -> str:
    return f"bench_{tag}_{uuid.uuid4().hex[:10]}"


_INBOX = f"inbox_id, {INBOX_COLUMNS}"
_ENTRY = f"entry_id, inbox_id, {ENTRY_COLUMNS}"
_LINE = f"entry_id, {LINE_COLUMNS}"
_MOVE = f"move_id, entry_id, {MOVE_COLUMNS}"


def _insert(table: str, columns: str) -> str:
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(columns.split(',')))})"


INSERTS = {
    "inbox": _insert("inbox", _INBOX),
    "journal_entry": _insert("journal_entry", _ENTRY),
    "journal_line": _insert("journal_line", _LINE),
    "stock_move": _insert("stock_move", _MOVE),
}


@dataclass
class MessageRows:
    inbox: tuple
    entries: list[tuple]
    lines: list[tuple]
    moves: list[tuple]

    @property
    def rows(self) -> int:
        return 1 + len(self.entries) + len(self.lines) + len(self.moves)


def read_rows(pg_url: str, schema: str) -> list[MessageRows]:
    """Every inbox row the run wrote with its entries, lines and moves (ids kept), in order."""
    with pg_connect(pg_url, schema) as db:
        lines: dict[int, list[tuple]] = {}
        for row in db.execute(f"SELECT {_LINE} FROM journal_line ORDER BY entry_id, line_no"):
            lines.setdefault(row[0], []).append(row)
        moves: dict[int, list[tuple]] = {}
        for row in db.execute(f"SELECT {_MOVE} FROM stock_move ORDER BY move_id"):
            moves.setdefault(row[1], []).append(row)
        entries: dict[int, list[tuple]] = {}
        for row in db.execute(f"SELECT {_ENTRY} FROM journal_entry ORDER BY entry_id"):
            entries.setdefault(row[1], []).append(row)
        messages = []
        for row in db.execute(f"SELECT {_INBOX} FROM inbox ORDER BY inbox_id"):
            mine = entries.get(row[0], [])
            messages.append(
                MessageRows(
                    row,
                    mine,
                    [ln for e in mine for ln in lines.get(e[0], [])],
                    [mv for e in mine for mv in moves.get(e[0], [])],
                )
            )
    return messages


def _write_chunk(cursor, chunk: list[MessageRows]) -> None:
    cursor.executemany(INSERTS["inbox"], [m.inbox for m in chunk])
    cursor.executemany(INSERTS["journal_entry"], [e for m in chunk for e in m.entries])
    lines = [ln for m in chunk for ln in m.lines]
    if lines:
        cursor.executemany(INSERTS["journal_line"], lines)
    moves = [mv for m in chunk for mv in m.moves]
    if moves:
        cursor.executemany(INSERTS["stock_move"], moves)


_COPY = {
    "inbox": (f"COPY inbox ({_INBOX}) FROM STDIN", lambda m: [m.inbox]),
    "journal_entry": (f"COPY journal_entry ({_ENTRY}) FROM STDIN", lambda m: m.entries),
    "journal_line": (f"COPY journal_line ({_LINE}) FROM STDIN", lambda m: m.lines),
    "stock_move": (f"COPY stock_move ({_MOVE}) FROM STDIN", lambda m: m.moves),
}


def _copy_chunk(cursor, chunk: list[MessageRows]) -> None:
    for statement, rows_of in _COPY.values():
        with cursor.copy(statement) as copy:
            for message in chunk:
                for row in rows_of(message):
                    copy.write_row(row)


def psycopg_floor(
    pg_url: str,
    rows: list[MessageRows],
    setup_count: int,
    per: int,
    synchronous_commit: bool = True,
    copy: bool = False,
) -> dict:
    """Insert the timed messages' rows into a scratch schema of the ledger DDL, one transaction
    per `per` messages (1: per message), with executemany per table (or COPY per table);
    setup rows untimed."""
    write = _copy_chunk if copy else _write_chunk
    from integration.store.postgres import PostgresStore

    schema = schema_name("floor")
    try:
        PostgresStore(pg_base(pg_url), schema=schema).close()  # the same DDL as the ledger
        with pg_connect(pg_url, schema) as db:
            if not synchronous_commit:
                db.execute("SET synchronous_commit = off")
            cursor = db.cursor()
            with db.transaction():
                _write_chunk(cursor, rows[:setup_count])
            timed = rows[setup_count:]
            chunks = [timed[i : i + per] for i in range(0, len(timed), per)]
            gc.collect()
            start = time.perf_counter()
            for chunk in chunks:
                with db.transaction():
                    write(cursor, chunk)
            wall = time.perf_counter() - start
            written = db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        if written != len(rows):
            raise RuntimeError(f"floor wrote {written} inbox rows, expected {len(rows)}")
    finally:
        drop_schema(pg_url, schema)
    n = len(timed)
    total_rows = sum(m.rows for m in timed)
    return {
        "messages_per_transaction": per,
        "method": "copy" if copy else "executemany",
        "synchronous_commit": "on" if synchronous_commit else "off",
        "messages_per_s": round(n / wall, 1),
        "rows_per_s": round(total_rows / wall, 1),
        "rows": total_rows,
        "wall_s": round(wall, 4),
    }


def round_trip(pg_url: str, count: int = 3000) -> dict:
    """One `SELECT 1` through psycopg: the wall time and this client's CPU per round trip,
    for scale (the core makes several per message)."""
    with pg_connect(pg_url) as db:
        for _ in range(200):
            db.execute("SELECT 1").fetchone()
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(count):
            db.execute("SELECT 1").fetchone()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_us": round(wall / count * 1e6, 1), "client_cpu_us": round(cpu / count * 1e6, 1)}


def psycopg_floors(
    pg_url: str, rows: list[MessageRows], setup_count: int, sizes: list[int], repeat: int
) -> dict:
    """The floors for the rows of a run (the fastest of `repeat` each): one transaction per
    message, per batch size and for all the timed messages, COPY per the largest batch size;
    with the row counts and one `SELECT 1` round trip, for scale."""

    def fastest(per: int, **options) -> dict:
        return max(
            (psycopg_floor(pg_url, rows, setup_count, per, **options) for _ in range(repeat)),
            key=lambda f: f["messages_per_s"],
        )

    timed = rows[setup_count:]
    n = len(timed)
    floors = {"per_message": fastest(1)}
    for per in sorted({*sizes, n}):
        floors[f"per_{per}" if per != n else "one_transaction"] = fastest(per)
    largest = max(sizes)
    floors[f"copy_per_{largest}"] = fastest(largest, copy=True)
    floors["rows_per_message"] = round(sum(m.rows for m in timed) / n, 3)
    floors["rows_written"] = {
        "inbox": n,
        "journal_entry": sum(len(m.entries) for m in timed),
        "journal_line": sum(len(m.lines) for m in timed),
        "stock_move": sum(len(m.moves) for m in timed),
    }
    floors["select_1_round_trip"] = round_trip(pg_url)
    return floors
