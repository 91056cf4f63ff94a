"""pytest fixtures: a namespace, broker and database per test run, cleaned up afterwards."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlparse

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_shared.amqp import AmqpConnection, Topology
from smsgw_shared.config import Settings
from smsgw_shared.testing.relay import TcpRelay

AMQP_URL = os.environ.get("SMSGW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DATABASE_URL = os.environ.get(
    "SMSGW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _reachable(url: str, default_port: int) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or default_port), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The test broker; fails (never skips) when RabbitMQ is down."""
    if not _reachable(AMQP_URL, 5672):
        pytest.fail(
            f"RabbitMQ is not reachable at {AMQP_URL}: start it with `rabbitmq-server -detached`",
            pytrace=False,
        )
    return AMQP_URL


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """An admin URL of the test PostgreSQL; fails (never skips) when it is down."""
    if not _reachable(DATABASE_URL, 5432):
        pytest.fail(
            f"PostgreSQL is not reachable at {DATABASE_URL}: start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`",
            pytrace=False,
        )
    return DATABASE_URL


@pytest.fixture
async def broker_relay(broker_url: str) -> AsyncIterator[TcpRelay]:
    """A TCP relay in front of the test broker: kill it to take the broker away from
    whatever connects through it (`url_through(settings.amqp_url, relay.port)`)."""
    u = urlparse(broker_url)
    relay = TcpRelay(u.hostname or "127.0.0.1", u.port or 5672)
    await relay.start()
    yield relay
    await relay.kill()


@pytest.fixture
def namespace() -> str:
    """A fresh namespace for this test's exchanges and queues."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def settings(namespace: str, broker_url: str, tmp_path: os.PathLike[str]) -> Settings:
    """Settings for one test: own namespace, fast retries, free ports."""
    return Settings.model_validate(
        {
            "namespace": namespace,
            "amqp_url": broker_url,
            "log_format": "text",
            "environment": "development",
            "workers": {
                "retry_delays": [0.2, 0.5, 1.0],
                "max_attempts": 4,
                "heartbeat_interval": 0.5,
                "modem_metrics_port": 0,
                "smpp_metrics_port": 0,
                "state_dir": str(tmp_path),
            },
            "inbound": {"metrics_port": 0},
            "webhooks": {"allow_private": True, "retry_schedule": [0.2, 0.5]},
        }
    )


@pytest.fixture
async def amqp(settings: Settings) -> AsyncIterator[AmqpConnection]:
    """A connected AmqpConnection in the test's namespace; deletes the namespace after."""
    topo = Topology(settings.namespace, settings.workers.retry_delays)
    conn = AmqpConnection(settings.amqp_url, topo, name="pytest")
    await conn.connect()
    yield conn
    await conn.stop_redeclaring()  # it would otherwise declare what is being deleted
    await delete_namespace(conn, settings)
    await conn.close()


async def delete_namespace(conn: AmqpConnection, settings: Settings) -> None:
    """Delete every queue and exchange the namespace may hold."""
    topo = conn.topology
    routes = ["modem:*", "smpp:*"]
    routes += [f"modem:{m.id}" for m in settings.modems]
    routes += [f"smpp:{b.id}" for b in settings.smpp.binds]
    routes += [f"modem:m{i}" for i in range(1, 9)] + [f"smpp:b{i}" for i in range(1, 5)]
    binds = [b.id for b in settings.smpp.binds] + [f"b{i}" for i in range(1, 5)]
    modems = [m.id for m in settings.modems] + [f"m{i}" for i in range(1, 9)]
    names: set[str] = set()
    # Other processes of the test (a stack started from a config file) may use other retry
    # tiers than this fixture's settings: delete the common ones too (deleting a queue that
    # does not exist is a no-op for RabbitMQ).
    for tiers in (settings.workers.retry_delays, [0.2, 0.5, 1.0, 2.0], [5.0, 30.0, 120.0, 600.0]):
        t = Topology(topo.ns, tiers)
        names |= set(t.all_queue_names(routes, modems, binds))
    names |= conn.queue_names  # every queue it declared, forgotten for redeclaring or not
    exchanges = {n for n, _ in topo.exchanges()}
    ch = await conn.connection.channel(publisher_confirms=False)
    # The connection's own queues go twice: a declare of its re-declaring task, cancelled
    # by `stop_redeclaring` after the broker had it, may land (on its own channel) after
    # the first delete. By the second pass it has.
    for name in [*sorted(names - exchanges), *sorted(conn.queue_names - exchanges)]:
        for _ in range(2):  # once more on a fresh channel if the first try lost its channel
            try:
                await ch.queue_delete(name)
                break
            except Exception:
                ch = await conn.connection.channel(publisher_confirms=False)
    for name in exchanges:
        try:
            await ch.exchange_delete(name)
        except Exception:
            ch = await conn.connection.channel(publisher_confirms=False)
    await ch.close()


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped afterwards."""
    from smsgw_shared.store.db import drop_database
    from smsgw_shared.store.migrate import upgrade

    u = urlparse(postgres_url)
    name = f"smsgw_test_{uuid.uuid4().hex[:10]}"
    url = u._replace(path=f"/{name}").geturl()
    upgrade(url)
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture
def db_settings(settings: Settings, database_url: str) -> Settings:
    """`settings` with the session's test database."""
    return settings.model_copy(update={"database_url": database_url})


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An async engine on the session's test database."""
    from smsgw_shared.store.db import make_engine

    eng = make_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()
