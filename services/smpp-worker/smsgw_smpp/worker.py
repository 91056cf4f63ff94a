"""One bind at work: its job consumers (only while bound), heartbeats and query responder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from smsgw_shared.amqp import (
    AmqpConnection,
    Consumer,
    Outgoing,
    Packer,
    Publisher,
    QueueSpec,
    Topology,
)
from smsgw_shared.config import Settings, SmppBindConfig
from smsgw_shared.messages import Heartbeat, SendJob
from smsgw_shared.runtime import bounded
from smsgw_smpp.bind import SmppBind
from smsgw_smpp.deliveries import DeliveryHandler
from smsgw_smpp.jobs import BoundedSet, IdMap, JobSender
from smsgw_smpp.metrics import SmppMetrics
from smsgw_smpp.rpc import QueryResponder, SmppQueryRequest, rpc_queue, rpc_queue_spec

log = logging.getLogger(__name__)


def bind_routes(cfg: SmppBindConfig) -> list[str]:
    """Routes a bind takes jobs from: its own, the SMPP pool, its named pools."""
    return [f"smpp:{cfg.id}", "smpp:*", *(f"pool:{p}" for p in cfg.pools)]


def bind_queue_specs(topology: Topology, cfg: SmppBindConfig) -> list[QueueSpec]:
    """Every queue a bind consumes, with DLQs and delay queues, and its rpc queue."""
    specs: list[QueueSpec] = []
    for route in bind_routes(cfg):
        specs += topology.job_queues(route)
    specs.append(rpc_queue_spec(topology, cfg.id))
    return specs


async def _first(*aws: Any) -> None:
    """Wait until the first of `aws` completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


class BindWorker:
    """Wires one `SmppBind` to the broker."""

    def __init__(
        self,
        cfg: SmppBindConfig,
        settings: Settings,
        amqp: AmqpConnection,
        publisher: Publisher,
        canceled: BoundedSet,
        metrics: SmppMetrics,
    ) -> None:
        self.cfg = cfg
        self.settings = settings
        self.amqp = amqp
        self.topology = amqp.topology
        self.publisher = publisher
        # Status events (sent, failed, receipts) go packed: many per broker message.
        self.events = Packer(publisher)
        self.delivery = DeliveryHandler(cfg, publisher, self.topology, metrics, self.events)
        self.bind = SmppBind(cfg, self.delivery, metrics)
        self.ids = IdMap()
        self.sender = JobSender(
            self.bind, publisher, self.topology, canceled, self.ids, events=self.events
        )
        self.responder = QueryResponder(self.bind, self.ids, publisher)
        self.queues = [self.topology.job_queue(r) for r in bind_routes(cfg)]
        # Enough messages in hand to keep the window full while others publish outcomes.
        self.prefetch = max(settings.workers.prefetch, 2 * cfg.window)
        self.drain_timeout = max(5.0, 2 * cfg.response_timeout)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rpc: Consumer[SmppQueryRequest] | None = None
        self._consumers: list[Consumer[SendJob]] = []
        self.consuming = False
        self.in_hand_at_stop = 0  # jobs in hand when `stop` began
        self.unfinished = 0  # jobs still unfinished at settings.shutdown_timeout, given back

    async def start(self) -> None:
        """Start the bind, the consumer supervisor, heartbeats and the query responder."""
        self.bind.start()
        self._rpc = Consumer(
            self.amqp,
            rpc_queue(self.topology, self.cfg.id),
            SmppQueryRequest,
            self.responder.handle,
            prefetch=8,
            max_attempts=1,
        )
        await self._rpc.start()
        self._tasks.append(asyncio.create_task(self._consume_loop()))
        self._tasks.append(asyncio.create_task(self._heartbeat_loop()))

    async def stop(self) -> None:
        """Stop consuming, finish the jobs in hand (up to settings.shutdown_timeout; the rest
        is given back to the broker), drain the window (bounded), unbind."""
        self.in_hand_at_stop = sum(c.in_flight for c in self._consumers)
        self._stopping.set()
        consume = self._tasks[0] if self._tasks else None
        if consume is not None:
            await asyncio.wait([consume], timeout=self.settings.shutdown_timeout + 5)
        if self._rpc is not None:
            await self._rpc.stop(timeout=5)
        # The window is empty unless jobs were given back: their submits get a short wait.
        await self.bind.stop(self.drain_timeout if not self.unfinished else 5.0)
        await bounded(self.events.close(), "the last status events", 5.0)
        await bounded(self._publish_heartbeat(), "the last heartbeat", 2.0)
        for t in self._tasks:
            t.cancel()

    async def _consume_loop(self) -> None:
        while not self._stopping.is_set():
            await _first(self.bind.bound.wait(), self._stopping.wait())
            if self._stopping.is_set():
                return
            consumers = [
                Consumer(
                    self.amqp,
                    q,
                    SendJob,
                    self.sender.handle,
                    prefetch=self.prefetch,
                    max_attempts=self.settings.workers.max_attempts,
                    on_dead_letter=self.sender.on_dead_letter,
                )
                for q in self.queues
            ]
            started = []
            try:
                for c in consumers:
                    await c.start()
                    started.append(c)
            except Exception as exc:
                log.warning("cannot consume (%r); retrying", exc, extra={"bind": self.cfg.id})
            self._consumers = started
            self.consuming = len(started) == len(consumers)
            if self.consuming:
                await _first(self.bind.lost.wait(), self._stopping.wait())
            else:
                await _first(asyncio.sleep(1.0), self._stopping.wait())
            self.consuming = False
            stopping = self._stopping.is_set()
            timeout = self.settings.shutdown_timeout if stopping else self.drain_timeout
            left = await asyncio.gather(
                *(c.stop(timeout=timeout) for c in started), return_exceptions=True
            )
            self._consumers = []
            if stopping:
                self.unfinished = sum(n for n in left if isinstance(n, int))

    def heartbeat(self) -> Heartbeat:
        """The bind's live state."""
        b = self.bind
        b.update_gauges()
        return Heartbeat(
            route=b.route,
            kind="smpp",
            state=b.state,
            connected=b.connected,
            in_flight=b.in_flight,
            interval=self.settings.workers.heartbeat_interval,
            details={
                "sessions": dict(b.session_state),
                "throttled": b.rate.is_throttled,
                "rate_limit": b.rate.rate,
                "tps": self.cfg.tps,
                "window": self.cfg.window,
                "reconnects": b.reconnects,
                "receipts": self.delivery.receipts,
                "inbound": self.delivery.inbound,
                "possible_duplicates": self.sender.duplicates,
                "consuming": self.consuming,
                "host": f"{self.cfg.host}:{self.cfg.port}",
            },
        )

    async def _publish_heartbeat(self) -> None:
        hb = self.heartbeat()
        key = self.topology.heartbeat_key(hb.route)
        try:
            await self.publisher.publish(Outgoing(self.topology.events_exchange, key, hb))
        except Exception as exc:
            log.debug("heartbeat not published: %r", exc)

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.workers.heartbeat_interval
        while not self._stopping.is_set():
            await self._publish_heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
