"""The inbound service: consumers, periodic sweeps, the webhook dispatcher, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound import metrics
from smsgw_inbound.dispatcher import Dispatcher
from smsgw_inbound.expiry import Expirer
from smsgw_inbound.heartbeats import HeartbeatHandler
from smsgw_inbound.projection import APPLIED, DUPLICATE, PARKED, Projector
from smsgw_inbound.received import Receiver
from smsgw_inbound.retention import Retention
from smsgw_inbound.store_retry import apply_retrying
from smsgw_shared.amqp import (
    AmqpConnection,
    BatchConsumer,
    Consumer,
    PermanentFailure,
    Topology,
)
from smsgw_shared.config import Settings
from smsgw_shared.messages import Heartbeat, InboundPart, StatusEvent
from smsgw_shared.observability import HealthServer
from smsgw_shared.report_scope import ReportScopes
from smsgw_shared.runtime import ShutdownReport, bounded, tune_gc
from smsgw_shared.safety import check_production_safety
from smsgw_shared.store.db import make_engine
from smsgw_shared.store.repos.projection import ProjectionRepository
from smsgw_shared.store.repos.retention import RetentionRepository
from smsgw_shared.store.repos.webhooks import WebhookRepository

log = logging.getLogger(__name__)

GAUGE_INTERVAL = 5.0

Consumers = BatchConsumer[StatusEvent] | Consumer[InboundPart] | Consumer[Heartbeat]


class StatusHandler:
    """Batch handler of `status_queue`: one store transaction per batch of events."""

    def __init__(self, projector: Projector, engine: AsyncEngine | None = None) -> None:
        self.projector = projector
        self.engine = engine

    async def store_answers(self) -> bool:
        """Whether the store answers a trivial query at once (then a batch that keeps
        failing is the batch's fault, and is split)."""
        if self.engine is None:
            return False
        async with asyncio.timeout(3), self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def handle(self, events: Sequence[StatusEvent]) -> list[BaseException | None]:
        """One outcome per event once the store has the batch: None (ack) when applied,
        a duplicate or parked; unknown messages go to the DLQ; an event that fails on its
        own is requeued (the consumer dead-letters it once it keeps failing)."""
        results = await apply_retrying(
            self.projector.apply_batch, events, "projection", store_answers=self.store_answers
        )
        out: list[BaseException | None] = []
        for event, result in zip(events, results, strict=True):
            if isinstance(result, Exception):
                out.append(result)
            elif result in (APPLIED, DUPLICATE, PARKED):
                out.append(None)
            else:
                out.append(PermanentFailure(f"{result}: {event.message_id}"))
        return out


async def _every(
    interval: float, fn: Callable[[], Awaitable[object]], stop: asyncio.Event, name: str
) -> None:
    """Run `fn` every `interval` seconds until `stop` (errors are logged, never fatal)."""
    while not stop.is_set():
        try:
            await fn()
        except Exception as exc:
            log.warning("%s failed: %r", name, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def _drain(fn: Callable[[], Awaitable[int]], rounds: int = 20) -> None:
    """Call a bounded sweep until it has nothing left to do (at most `rounds` times)."""
    for _ in range(rounds):
        if await fn() == 0:
            return


def _ready_checks(
    amqp: AmqpConnection, engine: AsyncEngine
) -> dict[str, Callable[[], Awaitable[bool]]]:
    async def broker() -> bool:
        return amqp.is_connected

    async def store() -> bool:
        async with asyncio.timeout(3), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    return {"broker": broker, "store": store}


async def run(
    settings: Settings, stop: asyncio.Event, metrics_port: int | None = None
) -> ShutdownReport:
    """Run the inbound service until `stop` is set, then stop gracefully: the events in hand
    are applied (up to settings.shutdown_timeout), the rest is given back to the broker."""
    check_production_safety(settings)
    cfg = settings.inbound
    engine = make_engine(settings.database_url, pool_size=10, max_overflow=10)
    topology = Topology(settings.namespace, settings.workers.retry_delays)
    amqp = AmqpConnection(settings.amqp_url, topology, name="smsgw-inbound")
    health = HealthServer(
        cfg.metrics_host,
        cfg.metrics_port if metrics_port is None else metrics_port,
        _ready_checks(amqp, engine),
    )
    port = await health.start()
    log.info("health and metrics on port %d", port)

    scopes = ReportScopes.from_settings(settings)  # binds of one SMSC account share receipts
    status = StatusHandler(Projector(engine, cfg.report_match_window, scopes), engine)
    receiver = Receiver(engine, cfg.reassembly_timeout)
    expirer = Expirer(engine, cfg.expiry_grace)
    dispatcher = Dispatcher(WebhookRepository(engine), settings.webhooks)
    consumers: list[Consumers] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await amqp.connect()
        await amqp.declare(topology.inbound_queues())
        max_attempts = settings.workers.max_attempts
        consumers = [
            BatchConsumer(
                amqp,
                topology.status_queue,
                StatusEvent,
                status.handle,
                batch_size=cfg.batch_size,
                # Two batches in the store at once, a third one filling.
                prefetch=3 * cfg.batch_size,
                concurrency=2,
                linger=cfg.batch_linger,
                max_attempts=max_attempts,
            ),
            Consumer(
                amqp,
                topology.received_queue,
                InboundPart,
                receiver.handle,
                prefetch=32,
                max_attempts=max_attempts,
            ),
            Consumer(
                amqp,
                topology.heartbeat_queue,
                Heartbeat,
                HeartbeatHandler(engine).handle,
                prefetch=32,
                max_attempts=max_attempts,
            ),
        ]
        for c in consumers:
            await c.start()
        tasks = _periodic(cfg.expiry_interval, expirer, receiver, dispatcher, engine, stop)
        retention = Retention(RetentionRepository(engine), settings.retention)
        tasks.append(
            asyncio.create_task(
                _every(settings.retention.interval, retention.sweep, stop, "retention"),
                name="retention",
            )
        )
        tune_gc()
        log.info("inbound service running", extra={"namespace": settings.namespace})
        await stop.wait()
    finally:
        stop.set()
        report = await _shutdown(consumers, tasks, amqp, health, engine, settings.shutdown_timeout)
    return report


def _periodic(
    interval: float,
    expirer: Expirer,
    receiver: Receiver,
    dispatcher: Dispatcher,
    engine: AsyncEngine,
    stop: asyncio.Event,
) -> list[asyncio.Task[None]]:
    projection = ProjectionRepository(engine)
    webhooks = WebhookRepository(engine)

    async def gauges() -> None:
        metrics.PENDING_REPORTS.set(await projection.pending_count())
        metrics.WEBHOOK_BACKLOG.set(await webhooks.backlog())
        await receiver.housekeeping()

    return [
        asyncio.create_task(_every(interval, lambda: _drain(expirer.sweep), stop, "expiry")),
        asyncio.create_task(_every(interval, lambda: _drain(receiver.sweep), stop, "reassembly")),
        asyncio.create_task(_every(GAUGE_INTERVAL, gauges, stop, "gauges")),
        asyncio.create_task(dispatcher.run(stop), name="webhooks"),
    ]


async def _shutdown(
    consumers: Sequence[Consumers],
    tasks: Sequence[asyncio.Task[None]],
    amqp: AmqpConnection,
    health: HealthServer,
    engine: AsyncEngine,
    timeout: float,
) -> ShutdownReport:
    health.stopping()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # Consumers first: they finish the messages in hand.
    report = ShutdownReport(in_hand=sum(c.in_flight for c in consumers), unit="events")
    left = await asyncio.gather(
        *(c.stop(timeout=timeout) for c in consumers), return_exceptions=True
    )
    report.unfinished = sum(n for n in left if isinstance(n, int))
    if tasks:
        # The webhook dispatcher finishes the deliveries in hand; one cut short is retried
        # (by any inbound process) once its lease runs out.
        await asyncio.wait(tasks, timeout=max(1.0, deadline - loop.time()))
    for t in tasks:
        t.cancel()
    await bounded(amqp.close(), "closing the broker connection")
    await health.stop()
    await engine.dispose()
    return report
