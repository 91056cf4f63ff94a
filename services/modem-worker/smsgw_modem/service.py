"""The modem worker process: one supervisor per modem, its consumers, health and metrics.

The only module of the worker that touches aio-pika directly (the cancel broadcast queue
and passive declares for queue depth); everything else goes through `smsgw_shared.amqp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel

from smsgw_modem.events import CancelRegistry, EventSink
from smsgw_modem.journal import SendJournal
from smsgw_modem.rpc import UssdService
from smsgw_modem.sender import JobSender
from smsgw_modem.supervisor import ModemSupervisor
from smsgw_shared.amqp import AmqpConnection, Consumer, Publisher, QueueSpec, Topology
from smsgw_shared.config import ModemConfig, Settings
from smsgw_shared.messages import CancelNotice, ModemRequest, PayloadError, SendJob
from smsgw_shared.observability import HealthServer
from smsgw_shared.runtime import ShutdownReport, bounded
from smsgw_shared.safety import check_production_safety

log = logging.getLogger(__name__)

POOL_ROUTE = "modem:*"
# A modem that stops being ready lets its pool consumers finish the send in hand (which may
# take send_timeout, 60 s); at shutdown the bound is settings.shutdown_timeout instead.
STOP_TIMEOUT = 90.0


def pool_routes(config: ModemConfig) -> list[str]:
    """The pool routes a modem serves: `modem:*` and each configured `pool:<name>`."""
    return [POOL_ROUTE, *(f"pool:{name}" for name in config.pools)]


def queue_specs(topology: Topology, modems: list[ModemConfig]) -> list[QueueSpec]:
    """Every queue the worker uses (declared idempotently at start)."""
    specs = list(topology.inbound_queues())  # events are never published into the void
    routes: dict[str, None] = {}
    for m in modems:
        routes[f"modem:{m.id}"] = None
        routes.update(dict.fromkeys(pool_routes(m)))
    for route in routes:
        specs += topology.job_queues(route)
    for m in modems:
        specs += topology.rpc_queues(m.id)
    return specs


class QueueDepth:
    """Message counts of queues by passive declare, on one channel reopened on error."""

    def __init__(self, amqp: AmqpConnection) -> None:
        self._amqp = amqp
        self._channel: AbstractRobustChannel | None = None

    async def count(self, queue: str) -> int | None:
        """Messages ready in `queue` (may lag a little, DEPENDENCIES.md)."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._amqp.channel(confirms=False)
        try:
            q = await self._channel.declare_queue(queue, passive=True)
        except Exception:
            self._channel = None
            return None
        result = q.declaration_result
        return int(result.message_count) if result.message_count is not None else None

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


class ModemUnit:
    """One modem: supervisor, sender, USSD service and the consumers feeding them."""

    def __init__(
        self,
        config: ModemConfig,
        settings: Settings,
        amqp: AmqpConnection,
        events: EventSink,
        canceled: CancelRegistry,
        draining: asyncio.Event,
        depth: QueueDepth,
    ) -> None:
        self.config = config
        self.amqp = amqp
        self.topology = amqp.topology
        self.max_attempts = settings.workers.max_attempts
        self.shutdown_timeout = settings.shutdown_timeout
        own = self.topology.job_queue(f"modem:{config.id}")
        self.supervisor = ModemSupervisor(
            config,
            settings,
            events,
            draining=draining,
            on_ready=self._on_ready,
            queue_depth=lambda: depth.count(own),
        )
        self.journal = SendJournal.for_modem(settings.workers.state_dir, config.id)
        self.sender = JobSender(self.supervisor, events, self.journal, canceled)
        self.ussd = UssdService(self.supervisor, events)
        self.own = Consumer(
            amqp,
            own,
            SendJob,
            self.sender.handle_own,
            # Two: the next job for this modem is already here (waiting on the send lock)
            # when the current one finishes, hiding the ack → next delivery round trip
            # (~1-1.4 ms). Pools stay at one so an idle modem is never starved by a busy one.
            prefetch=2,
            max_attempts=self.max_attempts,
            on_dead_letter=self.sender.on_dead_letter,
        )
        self.rpc = Consumer(
            amqp,
            self.topology.rpc_queue(config.id),
            ModemRequest,
            self.ussd.handle,
            prefetch=1,
            max_attempts=1,
        )
        self.pools: list[Consumer[SendJob]] = []
        self._pool_lock = asyncio.Lock()
        self._pool_tasks: set[asyncio.Task[None]] = set()
        self._want_pools = False
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the supervisor and the consumers of the own and RPC queues."""
        await self.own.start()
        await self.rpc.start()
        self.task = asyncio.create_task(self.supervisor.run(), name=f"modem-{self.config.id}")

    def _on_ready(self, ready: bool) -> None:
        self._want_pools = ready
        task = asyncio.create_task(self._sync_pools())
        self._pool_tasks.add(task)
        task.add_done_callback(self._pool_tasks.discard)

    async def _sync_pools(self) -> None:
        """Consume the pool queues only while the modem is connected and registered."""
        async with self._pool_lock:
            if self._want_pools and not self.pools and not self.supervisor.draining.is_set():
                for route in pool_routes(self.config):
                    consumer = Consumer(
                        self.amqp,
                        self.topology.job_queue(route),
                        SendJob,
                        self.sender.handle_pool,
                        prefetch=1,
                        max_attempts=self.max_attempts,
                        on_dead_letter=self.sender.on_dead_letter,
                    )
                    await consumer.start()
                    self.pools.append(consumer)
            elif not self._want_pools and self.pools:
                pools, self.pools = self.pools, []
                await asyncio.gather(*(c.stop(STOP_TIMEOUT) for c in pools), return_exceptions=True)

    async def stop(self) -> tuple[int, int]:
        """Stop consuming, finish the jobs in hand (up to settings.shutdown_timeout; the rest
        is given back to the broker), close the port. Returns (jobs in hand at the stop,
        jobs left unfinished)."""
        self._want_pools = False
        async with self._pool_lock:
            pools, self.pools = self.pools, []
        consumers = [self.own, *pools]
        in_hand = sum(c.in_flight for c in consumers)
        left, _ = await asyncio.gather(
            asyncio.gather(
                *(c.stop(self.shutdown_timeout) for c in consumers), return_exceptions=True
            ),
            self.rpc.stop(min(10.0, self.shutdown_timeout)),
            return_exceptions=True,
        )
        unfinished = sum(n for n in left if isinstance(n, int)) if isinstance(left, list) else 0
        self.supervisor.halt.set()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 10.0)
        self.journal.close()
        return in_hand, unfinished


async def _listen_cancels(amqp: AmqpConnection, canceled: CancelRegistry) -> AbstractRobustChannel:
    channel = await amqp.channel(confirms=False)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(amqp.topology.events_exchange, Topology.CANCEL_KEY)

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            notice = CancelNotice.from_bytes(message.body)
        except PayloadError as exc:
            log.warning("bad cancel notice ignored: %s", exc)
            return
        canceled.add(notice.message_id)
        log.info("message canceled", extra={"canceled_message_id": notice.message_id})

    await queue.consume(on_message, no_ack=True)
    return channel


async def run(
    settings: Settings,
    stop: asyncio.Event,
    modem_ids: list[str] | None = None,
    metrics_port: int | None = None,
) -> ShutdownReport:
    """Run the modems (all configured, or `modem_ids`) until `stop` is set; then finish the
    jobs in hand (bounded) and report what was left."""
    check_production_safety(settings)
    configs = [m for m in settings.modems if modem_ids is None or m.id in modem_ids]
    missing = set(modem_ids or ()) - {m.id for m in configs}
    if missing:
        raise ValueError(f"unknown modem id(s): {', '.join(sorted(missing))}")
    if not configs:
        log.warning("no modems configured; the worker idles")
    topology = Topology(settings.namespace, settings.workers.retry_delays)
    amqp = AmqpConnection(settings.amqp_url, topology, name="modem-worker")
    await amqp.connect()
    await amqp.declare(queue_specs(topology, configs))
    publisher = Publisher(amqp)
    events = EventSink(publisher, topology)
    canceled = CancelRegistry()
    draining = asyncio.Event()
    depth = QueueDepth(amqp)
    cancel_channel = await _listen_cancels(amqp, canceled)
    units = [ModemUnit(c, settings, amqp, events, canceled, draining, depth) for c in configs]

    async def broker_ready() -> bool:
        return amqp.is_connected

    async def any_modem_ready() -> bool:
        return not units or any(u.supervisor.ready.is_set() for u in units)

    port = settings.workers.modem_metrics_port if metrics_port is None else metrics_port
    health = HealthServer(
        settings.workers.metrics_host, port, {"broker": broker_ready, "modems": any_modem_ready}
    )
    bound = await health.start()
    log.info(
        "modem worker started", extra={"modems": [c.id for c in configs], "metrics_port": bound}
    )
    report = ShutdownReport()
    try:
        for unit in units:
            await unit.start()
        await stop.wait()
    finally:
        health.stopping()
        draining.set()
        counts = await asyncio.gather(*(u.stop() for u in units), return_exceptions=True)
        for c in counts:
            if isinstance(c, tuple):
                report.in_hand += c[0]
                report.unfinished += c[1]
        # Bounded: a broker that does not answer must not hold the process.
        await bounded(cancel_channel.close(), "closing the cancel channel")
        await bounded(depth.close(), "closing the queue depth channel")
        await bounded(publisher.close(), "closing the publisher")
        await health.stop()
        await bounded(amqp.close(), "closing the broker connection")
    return report
