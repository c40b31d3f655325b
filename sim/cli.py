"""The `twin` command line."""

from __future__ import annotations

import sys

import click

from integration import ConfigurationError, parse_duration

__all__ = ["main"]


def _positive_seconds(text: str) -> float:
    """A duration option in seconds (`30s`, `1m`, a number), refused unless positive."""
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    if seconds <= 0:
        raise click.BadParameter("the interval must be longer than zero")
    return seconds


def _ledger_options(command):
    """`--db` and `--settings`: the ledger and the core's settings, as `serve` and `consume`
    both take them."""
    command = click.option(
        "--settings",
        "settings_path",
        required=True,
        type=click.Path(exists=True),
        help="Core settings (plants, locations, policies) as JSON or YAML.",
    )(command)
    return click.option(
        "--db",
        "db_url",
        default="sqlite:///reports/service/ledger.db",
        show_default=True,
        help="Ledger store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB[?schema=S].",
    )(command)


@click.group()
@click.version_option(package_name="mfg-twin", prog_name="twin")
def twin() -> None:
    """A digital twin of manufacturing plants driving a real ERP/MES integration core."""


@twin.command()
@_ledger_options
@click.option(
    "--keys",
    "keys_path",
    type=click.Path(exists=True),
    help="API keys file (JSON); else the MFG_TWIN_API_KEYS environment variable.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=int)
@click.option(
    "--max-wait-s",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    envvar="MFG_TWIN_MAX_WAIT_S",
    help="Refuse a submission (429 OVERLOADED) when its expected wait passes this.",
)
@click.option(
    "--dead-letter-quota",
    "dead_letter_quota_bytes",
    default=64 << 20,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="MFG_TWIN_DEAD_LETTER_QUOTA",
    help="Bytes of rejected payloads each key may leave in the dead letters an hour.",
)
@click.option(
    "--alerts",
    "alerts_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Alert rules (YAML or JSON, `rules: [...]`) evaluated on the ledger.",
)
@click.option(
    "--alert-interval",
    "alert_interval_s",
    default="30s",
    show_default=True,
    callback=lambda _ctx, _param, value: _positive_seconds(value),
    help="How often the alert rules (and the console's figures) are evaluated: 30s, 1m, ...",
)
@click.option(
    "--webhook",
    "webhook_url",
    metavar="URL",
    help="POST every firing and resolved alert notice here as JSON (retried with backoff).",
)
def serve(
    db_url: str,
    settings_path: str,
    keys_path: str | None,
    host: str,
    port: int,
    max_body_bytes: int,
    max_wait_s: float,
    dead_letter_quota_bytes: int,
    alerts_path: str | None,
    alert_interval_s: float,
    webhook_url: str | None,
) -> None:
    """Serve the integration core over HTTP (OpenAPI at /docs and /openapi.json; the
    operations console at /console)."""
    import uvicorn

    from integration.service import build_app

    _make_ledger_directory(db_url)
    try:
        app = build_app(
            db_url, settings_path, keys_path, max_body_bytes, max_wait_s, dead_letter_quota_bytes,
            alerts_path, alert_interval_s, webhook_url,
        )  # fmt: skip
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


def _make_ledger_directory(db_url: str) -> None:
    """An SQLite ledger file's directory, made if missing."""
    if db_url.startswith("sqlite:///") and db_url != "sqlite:///:memory:":
        from pathlib import Path

        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _announce(line: str) -> None:
    """A line on stdout at once (a supervisor or a test waits for it)."""
    click.echo(line)
    sys.stdout.flush()


@twin.command()
@click.option(
    "--amqp",
    "amqp_url",
    default="amqp://guest:guest@127.0.0.1:5672/",
    show_default=True,
    help="The broker, with the consumer's own user.",
)
@_ledger_options
@click.option(
    "--keys",
    "keys_path",
    type=click.Path(exists=True),
    help="`twin serve`'s keys file: a broker user is the key of the same name.",
)
@click.option("--prefix", default="mfg", show_default=True, help="Names of the topology.")
@click.option("--queues", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--prefetch", default=500, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--delivery-limit",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Redeliveries before a queue dead-letters a message (fixed when the queue is made).",
)
@click.option(
    "--members",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Consumer processes sharing the queues: each is active for its share.",
)
@click.option(
    "--member",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="This process's number, 0..MEMBERS-1: active for the queues with index % MEMBERS.",
)
@click.option(
    "--standby-delay",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds before subscribing (as standby) to the other members' queues.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0),
    help="Prometheus metrics on this loopback port (0: any free one, printed).",
)
@click.option(
    "--ack-before-commit",
    is_flag=True,
    hidden=True,
    help="Negative control for tests: ack before the commit (loses messages on a crash).",
)
@click.option(
    "--crash-on",
    hidden=True,
    help="Tests only: exit at once (code 70) on a delivery whose body contains this text.",
)
def consume(
    amqp_url, db_url, settings_path, keys_path, prefix, queues, prefetch, delivery_limit,
    members, member, standby_delay, metrics_port, ack_before_commit, crash_on,
) -> None:  # fmt: skip
    """Consume from RabbitMQ into the integration core (topology declared on start)."""
    from integration.broker import ConsumerOptions, Topology, run_consumer

    _make_ledger_directory(db_url)
    if member >= members:
        raise click.BadParameter(f"must be below --members ({members})", param_hint="--member")
    options = ConsumerOptions(
        amqp_url,
        Topology(prefix, queues, delivery_limit),
        prefetch,
        ack_before_commit=ack_before_commit,
        member=member,
        members=members,
        standby_delay_s=standby_delay,
        crash_on=crash_on.encode() if crash_on else None,
    )
    try:
        run_consumer(db_url, settings_path, keys_path, options, metrics_port, _announce)
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error


@twin.command()
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(exists=True, dir_okay=False))
@click.option("--seed", type=int, help="Root seed (overrides the scenario's).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field.")
@click.option("--check", is_flag=True, help="Exit 1 on a failed assertion; write junit.xml.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--processes",
    type=click.IntRange(1, 2),
    help="1: the twin and the core in one process; 2: the core in a second one, fed in blocks "
    "(default: 2 on 2+ cores unless the scenario's flow reads the core's answers).",
)
def run(scenario_path, seed, out_dir, overrides, check, quiet, processes) -> None:
    """Simulate SCENARIO against the in-process core and write a run directory."""
    from sim.run.session import run_scenario

    if seed is not None:
        overrides = (*overrides, f"seed={seed}")
    try:
        outcome = run_scenario(
            scenario_path, overrides, out_dir, progress=not quiet, junit=check, processes=processes
        )
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    click.echo(outcome.headline())
    click.echo(f"report: {outcome.out / 'report.md'}")
    if check:
        failed = outcome.failed_assertions()
        for line in failed:
            click.echo(f"FAILED {line}", err=True)
        if failed:
            sys.exit(1)


@twin.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(exists=True, file_okay=False))
def report(run_dir: str) -> None:
    """Rebuild RUN_DIR's summary and report from its trace and ledger."""
    from pathlib import Path

    from sim.run.session import report_run

    try:
        out = report_run(Path(run_dir))
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    click.echo(out.headline())
    click.echo(f"report: {out.out / 'report.md'}")


@twin.command()
@click.argument("run_a", metavar="RUN_A", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", metavar="RUN_B", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Also write it here.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of Markdown.")
def compare(run_a: str, run_b: str, out_path: str | None, as_json: bool) -> None:
    """Latency percentiles and queue depth of two run directories side by side (B against A),
    e.g. the twin's queue model and a load run against `twin consume`."""
    import json
    from pathlib import Path

    from sim.report.compare import compare_runs, render_comparison

    try:
        comparison = compare_runs(run_a, run_b)
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    text = json.dumps(comparison, indent=2) if as_json else render_comparison(comparison)
    if out_path is not None:
        Path(out_path).write_text(text + "\n", encoding="utf-8")
    click.echo(text)


@twin.command()
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=A,B,C", help="Values to sweep.")
@click.option("--replications", type=click.IntRange(min=1), help="Per variant (default 5).")
@click.option("--seed", type=int, help="Base seed: replication r uses seed + r.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--scheduler", metavar="tcp://HOST:PORT", help="Run on this Dask cluster.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Sweep directory.")
@click.option("--keep-runs", is_flag=True, help="Keep every replication's run directory.")
@click.option("--metric", "metrics", multiple=True, help="Summary key to compare (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sweep(
    scenario_path, sets, replications, seed, workers, scheduler, out_dir, keep_runs, metrics, quiet
) -> None:
    """What-if grid over SCENARIO with common random numbers and 95 % confidence intervals.

    Every variant is checked before anything runs (exit 2 naming the invalid ones); exit 1
    when a replication failed, after the others finished."""
    from sim.sweep.session import sweep_scenario

    try:
        outcome = sweep_scenario(
            scenario_path, sets, replications, metrics, seed=seed, workers=workers,
            scheduler=scheduler, out_dir=out_dir, keep_runs=keep_runs, progress=not quiet,
        )  # fmt: skip
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    click.echo(outcome.headline())
    click.echo(f"report: {outcome.out / 'sweep.md'}")
    failed = outcome.failure_lines()
    for line in failed:
        click.echo(f"FAILED {line}", err=True)
    if failed:
        sys.exit(1)


@twin.command()
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--target",
    required=True,
    metavar="URL",
    help="The running service's base URL, or a broker's amqp://HOST:PORT/ that `twin consume` "
    "reads.",
)
@click.option(
    "--ledger",
    metavar="URL",
    help="amqp:// targets: the ledger the consumer writes (sqlite:///PATH or postgresql://...), "
    "read back after the run.",
)
@click.option(
    "--prefix", default="mfg", show_default=True, help="amqp:// targets: the topology's prefix."
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Virtual seconds per wall-clock second.",
)
@click.option("--max-in-flight", type=click.IntRange(min=1), default=256, show_default=True)
@click.option(
    "--keys",
    "keys_path",
    type=click.Path(exists=True, dir_okay=False),
    help="The keys file `twin serve` uses; else MFG_TWIN_API_KEYS.",
)
@click.option(
    "--late-ms",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="A send starting later than this after its time is late.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Request timeout in seconds (default: the scenario's integration.timeout); amqp:// "
    "targets: how long outcomes may stall before the rest is unanswered (default 10).",
)
@click.option(
    "--client",
    type=click.Choice(["http11", "aiohttp"]),
    default="http11",
    show_default=True,
    help="HTTP client (https:// targets always use aiohttp).",
)
@click.option("--seed", type=int, help="Root seed (overrides the scenario's).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 on a failed assertion or a driver that fell behind; write junit.xml.",
)
def load(
    scenario_path, target, ledger, prefix, speed, max_in_flight, keys_path, late_ms, timeout_s,
    client, seed, out_dir, overrides, check,
) -> None:  # fmt: skip
    """Load-test a running service (or broker) at TARGET with SCENARIO's traffic, in real
    time / SPEED."""
    from sim.load import LoadOptions, load_run
    from sim.load.keys import read_source_users

    if seed is not None:
        overrides = (*overrides, f"seed={seed}")
    try:
        users, operate_key = read_source_users(keys_path)
        keys = {source: key for source, (_name, key) in users.items()}
        options = LoadOptions(
            target, keys, operate_key, speed, max_in_flight, late_ms / 1000, timeout_s, client,
            ledger, prefix, users,
        )  # fmt: skip
        announce = lambda line: click.echo(line, err=True)  # noqa: E731
        outcome = load_run(scenario_path, options, overrides, out_dir, check, announce)
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    click.echo(outcome.headline())
    click.echo(f"report: {outcome.out / 'report.md'}")
    failed = outcome.failed_assertions()
    if outcome.summary["load"]["fell_behind"]:
        failed.append("the driver fell behind its schedule: latency figures are not the target's")
    for line in failed:
        click.echo(f"{'FAILED' if check else 'WARNING'} {line}", err=True)
    if check and failed:
        sys.exit(1)


@twin.command()
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field.")
def settings(scenario_path, overrides) -> None:
    """Print the core settings SCENARIO's plants need, for `twin serve --settings`."""
    from sim.model.catalogue import Catalogue
    from sim.model.streams import Streams
    from sim.scenario.document import load_scenario

    try:
        scenario = load_scenario(scenario_path, tuple(overrides))
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    catalogue = Catalogue.generate(scenario, Streams(scenario.seed))
    click.echo(catalogue.core_settings().model_dump_json(indent=2))


@twin.command()
@click.option("--out", "out_path", default="scenarios/schema.json", show_default=True)
@click.option(
    "--readme",
    type=click.Path(exists=True, dir_okay=False),
    help="Also regenerate the scenario reference table in this Markdown file.",
)
def schema(out_path: str, readme: str | None) -> None:
    """Write the JSON Schema of scenario files (and the README's scenario reference)."""
    import json
    from pathlib import Path

    from sim.scenario.document import scenario_schema
    from sim.scenario.reference import replace_reference

    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scenario_schema(), indent=2, sort_keys=True) + "\n")
    click.echo(f"wrote {path}")
    if readme is not None:
        try:
            text = replace_reference(Path(readme).read_text(encoding="utf-8"))
        except ValueError as error:
            raise click.UsageError(f"{readme}: {error}") from error
        Path(readme).write_text(text, encoding="utf-8")
        click.echo(f"updated the scenario reference in {readme}")


def main() -> None:
    twin()  # click exits with the command's status


if __name__ == "__main__":
    main()
