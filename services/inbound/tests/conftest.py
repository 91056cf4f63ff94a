"""Inbound test fixtures: messages inserted in the store, a real local HTTP receiver, the
service running in-process against the real broker and database."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound.service import run
from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher
from smsgw_shared.config import Settings
from smsgw_shared.messages import Payload
from smsgw_shared.store.schema import (
    event_log,
    message_events,
    messages,
    webhook_deliveries,
    webhooks,
)
from smsgw_shared.testing.helpers import free_port, wait_for


async def add_message(
    engine: AsyncEngine,
    *,
    parts: int = 1,
    status: str = "queued",
    route: str = "smpp:*",
    to: str = "+79160001234",
    api_key_id: uuid.UUID | None = None,
    status_callback: str | None = None,
    expires_at: datetime | None = None,
    dlr: bool = True,
    reference: str | None = None,
) -> uuid.UUID:
    """Insert a message row as the API would (with its first history entry)."""
    mid = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            insert(messages).values(
                id=mid,
                batch_id=uuid.uuid4(),
                api_key_id=api_key_id,
                to_number=to,
                text="hello " * parts,
                encoding="gsm7",
                parts_count=parts,
                route=route,
                status=status,
                job_id=uuid.uuid4(),
                status_callback=status_callback,
                expires_at=expires_at,
                dlr=dlr,
                reference=reference,
            )
        )
        await conn.execute(
            insert(message_events).values(message_id=mid, state=status, source="api")
        )
    return mid


async def message_row(engine: AsyncEngine, mid: uuid.UUID) -> dict[str, Any]:
    from smsgw_shared.store.repos.messages import MessageRepository

    m = await MessageRepository(engine).get(mid)
    assert m is not None
    return m


async def status_of(engine: AsyncEngine, mid: uuid.UUID) -> str:
    async with engine.connect() as conn:
        return str(
            (await conn.execute(select(messages.c.status).where(messages.c.id == mid))).scalar_one()
        )


async def logged(engine: AsyncEngine, **where: Any) -> list[dict[str, Any]]:
    """event_log rows (by message_id/type…), oldest first."""
    conds = [event_log.c[k] == v for k, v in where.items()]
    async with engine.connect() as conn:
        res = await conn.execute(select(event_log).where(*conds).order_by(event_log.c.id))
        return [dict(r._mapping) for r in res]


async def clear_webhooks(engine: AsyncEngine) -> None:
    """Remove every subscription and delivery (the database is shared by the session)."""
    async with engine.begin() as conn:
        await conn.execute(delete(webhook_deliveries))
        await conn.execute(delete(webhooks))


@dataclass
class Receiver:
    """A real HTTP server recording what it receives; `respond` decides each answer."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    respond: Callable[[int], int] = lambda n: 200
    hang: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handler(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = len(self.received)
        self.received.append({"headers": dict(request.headers), "body": body, "path": request.path})
        if self.hang:
            await asyncio.sleep(self.hang)
        return web.Response(status=self.respond(n), text="ok")


@contextlib.asynccontextmanager
async def http_receiver(**kw: Any) -> AsyncIterator[Receiver]:
    """Run a Receiver on a free port."""
    rec = Receiver(port=free_port(), **kw)
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", rec.port)
    await site.start()
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
def inbound_settings(db_settings: Settings) -> Settings:
    """Fast sweeps, short reassembly timeout."""
    data = db_settings.model_dump()
    data["inbound"] |= {"expiry_interval": 0.2, "reassembly_timeout": 30.0, "metrics_port": 0}
    data["webhooks"] |= {"poll_interval": 0.05, "timeout": 2.0}
    return Settings.model_validate(data)


@contextlib.asynccontextmanager
async def running(settings: Settings, amqp: AmqpConnection) -> AsyncIterator[None]:
    """The inbound service in a task; returns once its consumers are attached."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, metrics_port=0))

    async def consuming() -> bool:
        if task.done():
            task.result()
        try:
            ch = await amqp.channel(confirms=False)
            q = await ch.declare_queue(amqp.topology.status_queue, passive=True)
            n = q.declaration_result.consumer_count
            await ch.close()
            return bool(n)
        except Exception:
            return False

    await wait_for(consuming, timeout=15)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def publish(amqp: AmqpConnection, key: str, payload: Payload) -> None:
    pub = Publisher(amqp)
    try:
        await pub.publish(Outgoing(amqp.topology.events_exchange, key, payload))
    finally:
        await pub.close()
