"""One timed service run -- a fresh ledger and `twin serve`, the setup posted untimed, the load
timed, the ledger checked -- and `ServiceRuns`, what the runs of one invocation share."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from checkout import ROOT
from service_load import BATCH_IN_FLIGHT, Load, LoadResult, best, drive, summary
from service_postgres import drop_schema, pg_connect, schema_name, with_query
from service_processes import (
    READ_KEY,
    Server,
    bearer,
    http_get,
    http_post,
    py_spy,
    running,
    twin_serve,
)
from workload import Workload


def post_setup(server: Server, workload: Workload) -> None:
    for source, bodies in workload.setup:
        for start in range(0, len(bodies), 500):
            chunk = bodies[start : start + 500]
            body = ("[" + ",".join(chunk) + "]").encode()
            status, answer = http_post(f"{server.url}/v1/messages/batch", body, bearer(source))
            if status != 200:
                raise RuntimeError(f"setup batch answered {status}: {answer[:500]!r}")
            outcomes = json.loads(answer)["outcomes"]
            bad = [o for o in outcomes if o["status"] != "POSTED"]
            if bad:
                raise RuntimeError(f"setup message not posted: {json.dumps(bad[0])[:500]}")


def ledger_counts(db_url: str, pg_schema: str | None) -> dict[str, int]:
    queries = {
        "posted": "SELECT COUNT(*) FROM inbox WHERE status = 'POSTED'",
        "inbox": "SELECT COUNT(*) FROM inbox",
        "dead_letters": "SELECT COUNT(*) FROM dead_letter",
        "journal_entries": "SELECT COUNT(*) FROM journal_entry",
        "journal_lines": "SELECT COUNT(*) FROM journal_line",
        "stock_moves": "SELECT COUNT(*) FROM stock_move",
        "stock_exceptions": "SELECT COUNT(*) FROM stock_exception",
    }
    if pg_schema is None:
        db = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            return {name: db.execute(sql).fetchone()[0] for name, sql in queries.items()}
        finally:
            db.close()
    with pg_connect(db_url, pg_schema) as db:
        return {name: db.execute(sql).fetchone()[0] for name, sql in queries.items()}


def check_ledger(server: Server, workload: Workload, db_url: str, schema: str | None) -> dict:
    """After timing: every message posted once, nothing dead-lettered, the books reconcile."""
    counts = ledger_counts(db_url, schema)
    expected = workload.setup_count + len(workload.timed)
    status, body = http_get(
        f"{server.url}/v1/reconciliation",
        timeout=300,
        headers={"Authorization": f"Bearer {READ_KEY}"},
    )
    reconciliation = json.loads(body) if status == 200 else {"ok": False, "status": status}
    clean = (
        counts["posted"] == counts["inbox"] == expected
        and counts["dead_letters"] == 0
        and counts["stock_exceptions"] == 0
        and reconciliation.get("ok") is True
    )
    if not clean:
        raise RuntimeError(
            f"the run did not post cleanly: counts={counts} expected={expected} "
            f"reconciliation={json.dumps(reconciliation)[:1000]}"
        )
    return {"all_posted": True, "reconciled": True, **counts}


@dataclass
class Backend:
    name: str
    new_url: Callable[[int], tuple[str, str | None]]  # run number -> (store URL, pg schema)
    drop: Callable[[str | None], None]


def run_service(
    backend: Backend,
    run: int,
    load: Load,
    client: str,
    workload: Workload,
    tmp: Path,
    config: tuple[Path, Path],
    keep: Callable[[str, str | None], None] | None = None,
    spy: Path | None = None,
    root: Path = ROOT,
) -> tuple[LoadResult, dict]:
    """A fresh ledger and server (of the checkout at `root`); setup untimed; the load timed;
    the ledger checked."""
    db_url, schema = backend.new_url(run)
    try:
        server = twin_serve(db_url, tmp, *config, root=root)
        with running(server):
            post_setup(server, workload)
            with py_spy(server.pid, spy):
                result = drive(client, server, load)
            if result.failures:
                raise RuntimeError(
                    f"{backend.name}: {len(result.failures)} requests failed, first: "
                    f"{result.failures[0]}"
                )
            checks = check_ledger(server, workload, db_url, schema)
        if keep is not None:
            keep(db_url, schema)
    finally:
        backend.drop(schema)
    return result, checks


@dataclass
class ServiceRuns:
    """What the service runs of one invocation share; `measure` runs one measurement `repeat`
    times and reports the fastest run."""

    workload: Workload
    client: str
    tmp: Path
    config: tuple[Path, Path]
    repeat: int
    concurrency: int
    pg_url: str
    schemas: list[str]  # every schema made, for the cleanup on the way out
    root: Path = ROOT  # the checkout whose `twin serve` is measured

    def sqlite(self, tag: str) -> Backend:
        """A WAL file per run in the temporary directory."""

        def make(run: int) -> tuple[str, str | None]:
            return f"sqlite:///{self.tmp / f'sqlite_file-{tag}-{run}.sqlite'}", None

        return Backend("sqlite_file", make, lambda _s: None)

    def postgres(self, tag: str, extra: dict[str, str] | None = None) -> Backend:
        """A fresh schema per run (`extra`: more URL parameters), dropped after the run."""

        def make(_run: int) -> tuple[str, str | None]:
            name = schema_name(tag)
            self.schemas.append(name)
            return with_query(self.pg_url, schema=name, **(extra or {})), name

        return Backend("postgres", make, lambda schema: drop_schema(self.pg_url, schema))

    def measure(self, backend: Backend, load: Load, batch: int | None, **kw) -> dict:
        results, checks = [], None
        for run in range(self.repeat):
            result, checks = run_service(
                backend,
                run,
                load,
                self.client,
                self.workload,
                self.tmp,
                self.config,
                root=self.root,
                **kw,
            )
            results.append(result)
            kw.pop("keep", None)  # rows are kept from the first run only
            kw.pop("spy", None)
        out = summary(best(results), batch=batch)
        out["in_flight"] = self.concurrency if batch is None else BATCH_IN_FLIGHT
        out["checks"] = checks
        return out
