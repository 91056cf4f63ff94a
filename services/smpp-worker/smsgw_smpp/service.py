"""The SMPP worker service: every configured bind, the broker wiring, health and metrics.

`run(settings, stop)` is the entry point `smsgw smpp-worker` calls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel
from prometheus_client import CollectorRegistry

from smsgw_shared.amqp import AmqpConnection, Publisher, QueueSpec, Topology
from smsgw_shared.config import Settings
from smsgw_shared.messages import CancelNotice, PayloadError
from smsgw_shared.observability import HealthServer
from smsgw_shared.runtime import ShutdownReport, bounded
from smsgw_shared.safety import check_production_safety
from smsgw_smpp.jobs import BoundedSet
from smsgw_smpp.metrics import SmppMetrics
from smsgw_smpp.rpc import query_sm
from smsgw_smpp.worker import BindWorker, bind_queue_specs

log = logging.getLogger(__name__)


class SmppService:
    """Owns the broker connection and one `BindWorker` per bind."""

    def __init__(
        self,
        settings: Settings,
        bind_ids: list[str] | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.settings = settings
        binds = settings.smpp.binds
        if bind_ids is not None:
            unknown = set(bind_ids) - {b.id for b in binds}
            if unknown:
                raise ValueError(f"unknown bind id(s): {', '.join(sorted(unknown))}")
            binds = [b for b in binds if b.id in bind_ids]
        self.bind_configs = binds
        self.topology = Topology(settings.namespace, settings.workers.retry_delays)
        self.amqp = AmqpConnection(settings.amqp_url, self.topology, name="smsgw-smpp-worker")
        self.metrics = SmppMetrics(CollectorRegistry())
        self.metrics_port = (
            settings.workers.smpp_metrics_port if metrics_port is None else metrics_port
        )
        self.canceled = BoundedSet()
        self.workers: dict[str, BindWorker] = {}
        self.health: HealthServer | None = None
        self._cancel_channel: AbstractRobustChannel | None = None
        self.publisher: Publisher | None = None

    def queue_specs(self) -> list[QueueSpec]:
        """Everything this service consumes, plus the queues its events land in."""
        # The inbound queues too: events published before the inbound service ever ran are
        # kept, not returned as unroutable.
        specs = list(self.topology.inbound_queues())
        for cfg in self.bind_configs:
            specs += bind_queue_specs(self.topology, cfg)
        return specs

    async def start(self) -> None:
        """Connect, declare, start every bind and the health server."""
        await self.amqp.connect()
        await self.amqp.declare(self.queue_specs())
        self.publisher = Publisher(self.amqp)
        await self._listen_for_cancels()
        for cfg in self.bind_configs:
            worker = BindWorker(
                cfg, self.settings, self.amqp, self.publisher, self.canceled, self.metrics
            )
            self.workers[cfg.id] = worker
            await worker.start()
        self.health = HealthServer(
            self.settings.workers.metrics_host,
            self.metrics_port,
            {"broker": self._broker_ok, "binds": self._binds_ok},
            registry=self.metrics.registry,
        )
        port = await self.health.start()
        log.info("SMPP worker up", extra={"binds": list(self.workers), "metrics_port": port})

    async def stop(self) -> ShutdownReport:
        """Stop consuming, finish the jobs in hand (bounded), drain windows, unbind, close;
        what was in hand and what was left unfinished (given back to the broker)."""
        if self.health is not None:
            self.health.stopping()
        await asyncio.gather(*(w.stop() for w in self.workers.values()), return_exceptions=True)
        report = ShutdownReport(
            in_hand=sum(w.in_hand_at_stop for w in self.workers.values()),
            unfinished=sum(w.unfinished for w in self.workers.values()),
        )
        if self.health is not None:
            await self.health.stop()
        # Bounded: a broker that does not answer must not hold the process.
        if self._cancel_channel is not None and not self._cancel_channel.is_closed:
            await bounded(self._cancel_channel.close(), "closing the cancel channel")
        if self.publisher is not None:
            await bounded(self.publisher.close(), "closing the publisher")
        await bounded(self.amqp.close(), "closing the broker connection")
        return report

    async def _broker_ok(self) -> bool:
        return self.amqp.is_connected

    async def _binds_ok(self) -> bool:
        return any(w.bind.connected for w in self.workers.values())

    async def _listen_for_cancels(self) -> None:
        # CancelNotice is a broadcast: every worker process gets its own exclusive queue.
        ch = await self.amqp.channel(confirms=False)
        self._cancel_channel = ch
        exchange = await ch.get_exchange(self.topology.events_exchange, ensure=False)
        queue = await ch.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, Topology.CANCEL_KEY)
        await queue.consume(self._on_cancel, no_ack=True)

    async def _on_cancel(self, message: AbstractIncomingMessage) -> None:
        try:
            notice = CancelNotice.from_bytes(message.body)
        except PayloadError as exc:
            log.warning("bad cancel notice: %s", exc)
            return
        self.canceled.add(notice.message_id)

    async def query(self, bind_id: str, provider_id: str, source: str = "") -> dict[str, Any]:
        """query_sm through bind `bind_id`: message_state, state, final_date, error_code."""
        worker = self.workers[bind_id]
        return await query_sm(worker.bind, worker.ids, provider_id, source)


async def run(
    settings: Settings,
    stop: asyncio.Event,
    bind_ids: list[str] | None = None,
    metrics_port: int | None = None,
) -> ShutdownReport:
    """Run the binds until `stop` is set, then drain and unbind gracefully."""
    check_production_safety(settings)
    service = SmppService(settings, bind_ids, metrics_port)
    await service.start()
    try:
        await stop.wait()
    finally:
        report = await service.stop()
    return report


__all__ = ["SmppService", "run"]
