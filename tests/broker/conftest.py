"""Fixtures of the broker tests: the broker's users once, a topology per test, consumers."""

from __future__ import annotations

import pytest

from tests.broker.consuming import Consuming
from tests.broker.rabbit import Rabbit, ensure_users, require_broker, write_keys
from tests.integration.served import write_config


@pytest.fixture(scope="session")
def broker_users() -> None:
    require_broker()
    ensure_users()


@pytest.fixture
def rabbit(request, broker_users):
    """A topology of this test's own, declared; deleted afterwards. Indirect parameters are
    `Rabbit`'s (`queues`, `delivery_limit`)."""
    made = Rabbit(**getattr(request, "param", {})).declare()
    yield made
    made.cleanup()


@pytest.fixture
def consumers(rabbit, tmp_path):
    """`start(db_url, *options)` starts a `twin consume` on the test's topology (`launch`
    only with `wait=False`); every process still running is stopped afterwards."""
    started: list[Consuming] = []
    settings_path, _http_keys = write_config(tmp_path)
    config = (settings_path, write_keys(tmp_path))

    def start(db_url: str, *options: str, wait: bool = True) -> Consuming:
        log = tmp_path / f"consume-{len(started)}.log"
        consuming = Consuming(db_url, rabbit.topology, config, log, options).launch()
        started.append(consuming)
        return consuming.wait_ready() if wait else consuming

    yield start
    for consuming in started:
        consuming.stop()
