"""Inbound benchmarks: projection rate, webhook delivery rate, the cost of a dead endpoint.

    .venv/bin/python bench/bench_inbound.py [--messages 20000] [--deliveries 10000]

Uses a throw-away database and namespace on the local PostgreSQL and RabbitMQ (the
SMSGW_TEST_* URLs if set). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlparse

import aiohttp
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound.dispatcher import Dispatcher
from smsgw_inbound.events import LogEvent, record_events, stable_id
from smsgw_inbound.projection import Projector
from smsgw_inbound.service import run
from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher, Topology
from smsgw_shared.config import Settings, WebhooksConfig
from smsgw_shared.messages import PartRef, StatusEvent, utcnow
from smsgw_shared.store.db import drop_database, make_engine
from smsgw_shared.store.migrate import upgrade_async
from smsgw_shared.store.repos.webhooks import WebhookRepository
from smsgw_shared.store.schema import messages, webhook_deliveries, webhooks
from smsgw_shared.testing import free_port

PG = os.environ.get("SMSGW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP = os.environ.get("SMSGW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def add_messages(engine: AsyncEngine, n: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    rows = [
        {
            "id": i,
            "batch_id": i,
            "to_number": "+79160001234",
            "text": "bench",
            "encoding": "gsm7",
            "parts_count": 1,
            "route": "smpp:*",
            "status": "queued",
            "job_id": i,
        }
        for i in ids
    ]
    async with engine.begin() as conn:
        for k in range(0, n, 5000):
            await conn.execute(insert(messages), rows[k : k + 5000])
    async with engine.connect() as conn:
        # A fresh database has no statistics: the planner would scan tables it thinks tiny.
        await conn.execute(text("ANALYZE"))
    return ids


def events_for(ids: list[uuid.UUID], tag: str) -> list[StatusEvent]:
    """A `sent` and a `delivered` report per message, reports interleaved a little late."""
    out: list[StatusEvent] = []
    for i, mid in enumerate(ids):
        pid = f"{tag}{i}"
        out.append(
            StatusEvent(
                message_id=str(mid),
                state="sent",
                route="smpp:b1",
                parts=[PartRef(index=1, provider_id=pid)],
            )
        )
        out.append(StatusEvent(state="delivered", route="smpp:b1", provider_id=pid))
    return out


async def count_status(engine: AsyncEngine, status: str) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count()).select_from(messages).where(messages.c.status == status)
                )
            ).scalar_one()
        )


async def bench_projection_direct(engine: AsyncEngine, n: int, batch: int) -> None:
    ids = await add_messages(engine, n)
    events = events_for(ids, "d")
    projector = Projector(engine, 7 * 86400)
    started = time.perf_counter()
    for k in range(0, len(events), batch):
        await projector.apply_batch(events[k : k + batch])
    took = time.perf_counter() - started
    print(
        f"projection (direct, batches of {batch}): {len(events)} events in {took:.2f}s = "
        f"{len(events) / took:,.0f} events/s"
    )


async def bench_projection_broker(settings: Settings, engine: AsyncEngine, n: int) -> None:
    ids = await add_messages(engine, n)
    events = events_for(ids, "b")
    topo = Topology(settings.namespace, settings.workers.retry_delays)
    amqp = AmqpConnection(settings.amqp_url, topo, name="bench")
    await amqp.connect()
    await amqp.declare(topo.inbound_queues())
    pub = Publisher(amqp)
    t0 = time.perf_counter()
    for k in range(0, len(events), 1000):
        chunk = events[k : k + 1000]
        await pub.publish_many(
            [Outgoing(topo.events_exchange, topo.status_key(e.state), e) for e in chunk]
        )
    print(f"  published {len(events)} events in {time.perf_counter() - t0:.2f}s")
    before = await count_status(engine, "delivered")
    stop = asyncio.Event()
    cpu0 = time.process_time()
    started = time.perf_counter()
    task = asyncio.create_task(run(settings, stop, metrics_port=0))
    while await count_status(engine, "delivered") - before < n:
        await asyncio.sleep(0.2)
    took = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    stop.set()
    await task
    print(
        f"projection (through RabbitMQ, service start included): {len(events)} events in "
        f"{took:.2f}s = {len(events) / took:,.0f} events/s "
        f"({1e6 * cpu / len(events):.0f} µs CPU/event, {100 * cpu / took:.0f}% of a core)"
    )
    await pub.close()
    ch = await amqp.connection.channel()
    for spec in topo.inbound_queues():
        with contextlib.suppress(Exception):
            await ch.queue_delete(spec.name)
    await amqp.close()


RECEIVER_CODE = """
import asyncio, sys
from aiohttp import web
hang = float(sys.argv[2])
count = 0
async def hook(request):
    global count
    await request.read()
    if hang:
        await asyncio.sleep(hang)
    count += 1
    return web.Response(status=204)
async def get_count(request):
    return web.Response(text=str(count))
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/count", get_count)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@contextlib.asynccontextmanager
async def receiver(hang: float = 0.0) -> AsyncIterator[tuple[str, Callable[[], Awaitable[int]]]]:
    """A receiver in its own process (it must not share the dispatcher's CPU)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RECEIVER_CODE, str(port), str(hang)
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def count() -> int:
            async with session.get(f"{base}/count") as r:
                return int(await r.text())

        for _ in range(100):
            try:
                await count()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        try:
            yield f"{base}/hook", count
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()


async def emit(engine: AsyncEngine, n: int) -> None:
    now = utcnow()
    for k in range(0, n, 1000):
        events = [
            LogEvent(stable_id("bench", uuid.uuid4()), "message.received", {"i": i}, now)
            for i in range(k, min(n, k + 1000))
        ]
        async with engine.begin() as conn:
            await record_events(conn, events)


async def pending(engine: AsyncEngine, url: str) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(webhook_deliveries)
                    .where(
                        webhook_deliveries.c.url == url, webhook_deliveries.c.status == "pending"
                    )
                )
            ).scalar_one()
        )


async def bench_webhooks(engine: AsyncEngine, n: int, with_dead: bool) -> float:
    repo = WebhookRepository(engine)
    async with engine.begin() as conn:
        await conn.execute(webhook_deliveries.delete())
        await conn.execute(webhooks.delete())
    # Both receivers are on 127.0.0.1: the per-host cap (16 by default, meant for endpoints
    # of one remote host) would let the hanging one hold every slot of the healthy one.
    cfg = WebhooksConfig(
        allow_private=True, timeout=5.0, concurrency_per_endpoint=32, concurrency_per_host=64
    )
    async with receiver() as (url, count), receiver(hang=60) as (dead_url, _):
        await repo.create(url=url, events=["*"])
        if with_dead:
            await repo.create(url=dead_url, events=["*"])
        await emit(engine, n)
        stop = asyncio.Event()
        d = Dispatcher(repo, cfg)
        started = time.perf_counter()
        task = asyncio.create_task(d.run(stop))
        while await count() < n:
            await asyncio.sleep(0.05)
        took = time.perf_counter() - started
        while await pending(engine, url):
            await asyncio.sleep(0.05)
        recorded = time.perf_counter() - started
        stop.set()
        await task
    label = "with a hanging endpoint alongside" if with_dead else "alone"
    print(
        f"webhooks ({label}): {n} deliveries in {took:.2f}s = {n / took:,.0f}/s "
        f"(all attempts recorded after {recorded:.2f}s)"
    )
    return n / took


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--deliveries", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="webhook runs alone / with a dead one")
    args = ap.parse_args()
    url = urlparse(PG)._replace(path=f"/smsgw_bench_{uuid.uuid4().hex[:8]}").geturl()
    await upgrade_async(url)
    engine = make_engine(url, pool_size=10)
    settings = Settings.model_validate(
        {
            "namespace": "bench" + uuid.uuid4().hex[:8],
            "amqp_url": AMQP,
            "database_url": url,
            "log_level": "WARNING",
            "environment": "development",  # guest/guest and no database password
            "inbound": {"metrics_port": 0, "batch_size": args.batch},
        }
    )
    try:
        await bench_projection_direct(engine, args.messages, args.batch)
        await bench_projection_broker(settings, engine, args.messages)
        # Alternating runs: one pair differs by ±15 % on this machine by noise alone.
        alone: list[float] = []
        shared: list[float] = []
        for _ in range(args.repeat):
            alone.append(await bench_webhooks(engine, args.deliveries, with_dead=False))
            shared.append(await bench_webhooks(engine, args.deliveries, with_dead=True))
        a, s = statistics.median(alone), statistics.median(shared)
        print(
            f"webhooks, median of {args.repeat}: alone {a:,.0f}/s, with a hanging endpoint "
            f"{s:,.0f}/s: the hanging endpoint changes the healthy one's rate by "
            f"{100 * (s / a - 1):+.1f}% (runs alone {min(alone):,.0f}–{max(alone):,.0f}/s)"
        )
    finally:
        await engine.dispose()
        await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
