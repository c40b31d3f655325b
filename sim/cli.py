"""The `twin` command line."""

from __future__ import annotations

import sys

import click

from integration import ConfigurationError

__all__ = ["main"]


@click.group()
def twin() -> None:
    """A digital twin of manufacturing plants driving a real ERP/MES integration core."""


@twin.command()
@click.option(
    "--db",
    "db_url",
    default="sqlite:///reports/service/ledger.db",
    show_default=True,
    help="Ledger store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB[?schema=S].",
)
@click.option(
    "--settings",
    "settings_path",
    required=True,
    type=click.Path(exists=True),
    help="Core settings (plants, locations, policies) as JSON or YAML.",
)
@click.option(
    "--keys",
    "keys_path",
    type=click.Path(exists=True),
    help="API keys file (JSON); else the MFG_TWIN_API_KEYS environment variable.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=int)
def serve(
    db_url: str,
    settings_path: str,
    keys_path: str | None,
    host: str,
    port: int,
    max_body_bytes: int,
) -> None:
    """Serve the integration core over HTTP (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from integration.service import build_app

    if db_url.startswith("sqlite:///") and db_url != "sqlite:///:memory:":
        from pathlib import Path

        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        app = build_app(db_url, settings_path, keys_path, max_body_bytes)
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


def main() -> None:
    sys.exit(twin(standalone_mode=True))


if __name__ == "__main__":
    main()
