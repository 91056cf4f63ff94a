"""API test fixtures: the real app (lifespan and all) on the test database and broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aiormq
import httpx
import pytest
from fastapi import FastAPI

from smsgw_api.app import create_app
from smsgw_api.deps import AppState
from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings


@pytest.fixture
def api_settings(db_settings: Settings) -> Iterator[Settings]:
    """Two modems, one bind, a rule sending +7916 to the bind, a bootstrap admin key."""
    data = db_settings.model_dump()
    data.update(
        bootstrap_api_key="sgw_test_" + uuid.uuid4().hex,
        modems=[
            {"id": "m1", "url": "socket://127.0.0.1:1"},
            {"id": "m2", "url": "socket://127.0.0.1:2"},
        ],
        smpp={"binds": [{"id": "b1"}]},
        routing={"default": "modem:*", "rules": [{"prefix": "+7916", "to": "smpp:b1"}]},
    )
    data["api"] = data["api"] | {"outbox_interval": 0.2, "scheduler_interval": 0.2}
    settings = Settings.model_validate(data)
    yield settings
    # The session shares one database: the outbox rows this test left for its namespace
    # go, or a later test's relay retries them against exchanges deleted with it.
    asyncio.run(_remove_outbox_rows(settings))


async def _remove_outbox_rows(settings: Settings) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    from smsgw_shared.store.direct import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(make_url(settings.database_url)))
    try:
        await conn.execute("DELETE FROM outbox WHERE exchange LIKE $1", f"{settings.namespace}.%")
    finally:
        await conn.close()


@asynccontextmanager
async def running_app(
    settings: Settings, wait_broker: bool = True
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, and a client talking to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: AppState = app.state.smsgw
        if wait_broker:
            await asyncio.wait_for(state.extras["broker_ready"].wait(), 15)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield app, client


@pytest.fixture
async def api_app(
    api_settings: Settings, amqp: AmqpConnection
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(api_settings) as pair:
        yield pair


@pytest.fixture
def api(api_app: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    """An httpx client on the running API."""
    return api_app[1]


@pytest.fixture
def app_state(api_app: tuple[FastAPI, httpx.AsyncClient]) -> AppState:
    state: AppState = api_app[0].state.smsgw
    return state


@pytest.fixture
def admin_key(api_settings: Settings) -> str:
    assert api_settings.bootstrap_api_key
    return api_settings.bootstrap_api_key


@pytest.fixture
def admin_headers(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


@pytest.fixture
def make_key(api: httpx.AsyncClient, admin_headers: dict[str, str]) -> Callable[..., Any]:
    """Create a key through the API; returns (json, headers)."""

    async def _make(**body: Any) -> tuple[dict[str, Any], dict[str, str]]:
        body.setdefault("name", "k" + uuid.uuid4().hex[:8])
        r = await api.post("/v1/keys", json=body, headers=admin_headers)
        assert r.status_code == 201, r.text
        data = r.json()
        return data, {"Authorization": f"Bearer {data['secret']}"}

    return _make


async def drain(
    amqp: AmqpConnection, queue: str, expect: int, timeout: float = 10.0
) -> list[bytes]:
    """Take `expect` messages from a queue (acking them), waiting up to `timeout`.

    Reads on a connection of its own, so a queue that does not exist yet (a service is
    still declaring it) or is being re-created (RabbitMQ answers `noproc`, closing the
    whole connection) is waited for instead of breaking the test's `amqp` connection.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got: list[bytes] = []
    conn: aio_pika.abc.AbstractConnection | None = None
    ch: aio_pika.abc.AbstractChannel | None = None
    try:
        while len(got) < expect and loop.time() < deadline:
            try:
                if conn is None or conn.is_closed:
                    conn = await aio_pika.connect(amqp.url)
                    ch = None
                if ch is None or ch.is_closed:
                    ch = await conn.channel(publisher_confirms=False)
                q = await ch.get_queue(queue, ensure=False)
                msg = await q.get(no_ack=True, fail=False)
            except (aiormq.exceptions.AMQPError, ConnectionError):
                msg = None  # queue missing or being re-created: try again on new channels
            except RuntimeError:
                # aiormq's "<Connection ...> closed": the broker closed it (`noproc`) before
                # aio-pika's own flag says so. Start again on a new connection.
                msg = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                conn = None
            if msg is None:
                await asyncio.sleep(0.05)
                continue
            got.append(msg.body)
    finally:
        if conn is not None and not conn.is_closed:
            await conn.close()
    return got


@asynccontextmanager
async def _served(settings: Settings) -> AsyncIterator[str]:
    """The real app behind uvicorn on a free port (streams need a real server)."""
    import uvicorn

    from smsgw_shared.testing import free_port

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture
def serve() -> Callable[[Settings], Any]:
    """`async with serve(settings) as "host:port"`: the app behind a real uvicorn."""
    return _served
