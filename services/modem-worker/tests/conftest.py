"""Fixtures for the modem worker tests: the simulator, a running worker, event capture."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage

from smsgw_modem import service
from smsgw_modem.sim import Simulator
from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher
from smsgw_shared.config import ModemConfig, Settings
from smsgw_shared.messages import Heartbeat, InboundPart, Payload, SendJob, StatusEvent
from smsgw_shared.testing import wait_for


def _free_block(count: int) -> int:
    """A base port with `count` consecutive free ports after it."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count >= 65535:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return int(base)
    raise RuntimeError("no free port block")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    """Two simulated modems (TCP and pty), status reports after 0.2 s."""
    base = _free_block(3)
    simulator = Simulator(2, base + 1, base, dlr_delay=0.2, pty_dir=tmp_path / "pty")
    await simulator.start()
    yield simulator
    await simulator.stop()


def modem_config(sim: Simulator, n: int, *, pty: bool = False, **overrides: Any) -> ModemConfig:
    """A fast-failing modem config pointing at simulated modem `n`."""
    server = sim.servers[n - 1]
    url = str(server.pty_link) if pty else f"socket://{server.host}:{server.port}"
    values: dict[str, Any] = {
        "id": f"m{n}",
        "url": url,
        "command_timeout": 1.0,
        "send_timeout": 5.0,
        "registration_timeout": 5.0,
        "reconnect_max": 0.5,
        "max_timeouts": 2,
    }
    return ModemConfig.model_validate(values | overrides)


def with_modems(settings: Settings, *modems: ModemConfig) -> Settings:
    """The test settings with these modems."""
    return settings.model_copy(update={"modems": list(modems)})


class Events:
    """Every event published to `{ns}.events` during a test, parsed."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Payload]] = []

    def on_message(self, message: AbstractIncomingMessage) -> None:
        key = message.routing_key or ""
        payload: Payload
        if key.startswith("status."):
            payload = StatusEvent.from_bytes(message.body)
        elif key.startswith("inbound."):
            payload = InboundPart.from_bytes(message.body)
        elif key.startswith("heartbeat."):
            payload = Heartbeat.from_bytes(message.body)
        else:
            return
        self.items.append((key, payload))

    def status(self, message_id: str | None = None, state: str | None = None) -> list[StatusEvent]:
        return [
            p
            for _, p in self.items
            if isinstance(p, StatusEvent)
            and (message_id is None or p.message_id == message_id)
            and (state is None or p.state == state)
        ]

    def inbound(self) -> list[InboundPart]:
        return [p for _, p in self.items if isinstance(p, InboundPart)]

    def heartbeats(self, route: str) -> list[Heartbeat]:
        return [p for _, p in self.items if isinstance(p, Heartbeat) and p.route == route]

    async def wait_status(
        self, message_id: str | None, state: str, count: int = 1, timeout: float = 15.0
    ) -> list[StatusEvent]:
        async def probe() -> list[StatusEvent] | None:
            found = self.status(message_id, state)
            return found if len(found) >= count else None

        return await wait_for(probe, timeout)

    async def wait_inbound(self, count: int, timeout: float = 15.0) -> list[InboundPart]:
        async def probe() -> list[InboundPart] | None:
            found = self.inbound()
            return found if len(found) >= count else None

        return await wait_for(probe, timeout)

    async def wait_connected(self, route: str, timeout: float = 15.0) -> Heartbeat:
        async def probe() -> Heartbeat | None:
            beats = [b for b in self.heartbeats(route) if b.connected]
            return beats[-1] if beats else None

        return await wait_for(probe, timeout)


@pytest.fixture
async def events(amqp: AmqpConnection) -> AsyncIterator[Events]:
    """Capture every event of the namespace (a temporary queue bound with `#`)."""
    await amqp.declare()
    collected = Events()
    channel = await amqp.channel(confirms=False)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(amqp.topology.events_exchange, "#")

    async def on_message(message: AbstractIncomingMessage) -> None:
        collected.on_message(message)

    await queue.consume(on_message, no_ack=True)
    yield collected
    with contextlib.suppress(Exception):
        await channel.close()


class Worker:
    """The modem worker service running in this event loop."""

    def __init__(self, amqp: AmqpConnection) -> None:
        self.amqp = amqp
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.publisher = Publisher(amqp)

    async def start(self, settings: Settings, modem_ids: list[str] | None = None) -> None:
        # Declared on the test's connection too, so the namespace cleanup deletes them.
        await self.amqp.declare(service.queue_specs(self.amqp.topology, settings.modems))
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(
            service.run(settings, self.stop_event, modem_ids, metrics_port=0)
        )

    async def stop(self) -> None:
        if self.task is None:
            return
        self.stop_event.set()
        await asyncio.wait_for(self.task, 60)
        self.task = None

    async def send(self, job: SendJob) -> None:
        topo = self.amqp.topology
        await self.publisher.publish(
            Outgoing(topo.jobs_exchange, topo.job_routing_key(job.route), job)
        )


@pytest.fixture
async def worker(amqp: AmqpConnection) -> AsyncIterator[Worker]:
    """A worker to start with `await worker.start(settings)`; stopped after the test."""
    w = Worker(amqp)
    yield w
    await w.stop()
    await w.publisher.close()


Probe = Callable[[], Awaitable[Any]]


@pytest.fixture
def mk_modem(sim: Simulator) -> Callable[..., ModemConfig]:
    """`mk_modem(n, pty=False, **overrides)` → a ModemConfig for simulated modem n."""

    def make(n: int, **overrides: Any) -> ModemConfig:
        return modem_config(sim, n, **overrides)

    return make


@pytest.fixture
def setup_modems(settings: Settings) -> Callable[..., Settings]:
    """`setup_modems(*configs)` → the test settings with these modems."""

    def make(*modems: ModemConfig) -> Settings:
        return with_modems(settings, *modems)

    return make
