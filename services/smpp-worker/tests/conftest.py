"""SMPP worker fixtures: the SMSC simulator, the service on the real broker, an event log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher
from smsgw_shared.amqp.packing import PACKED, unpack
from smsgw_shared.config import Settings
from smsgw_shared.messages import SendJob, StatusEvent
from smsgw_smpp.service import SmppService
from smsgw_smpp.sim import RunningSimulator, SimConfig, start_simulator


class SimControl:
    """The simulator's HTTP control interface, as tests use it."""

    def __init__(self, sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.server = sim.server
        self.http = http
        self.base = f"http://127.0.0.1:{sim.control_port}"

    async def get(self, path: str) -> Any:
        async with self.http.get(self.base + path) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.post(self.base + path, json=body or {}) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def config(self, **changes: Any) -> Any:
        return await self.post("/config", changes)

    async def sent(self) -> list[dict[str, Any]]:
        return await self.get("/sent")  # type: ignore[no-any-return]


@pytest.fixture
async def sim() -> AsyncIterator[SimControl]:
    """A fresh simulator on free ports (receipts after 50 ms)."""
    running = await start_simulator(SimConfig(dlr_delay=0.05), port=0, control_port=0)
    async with aiohttp.ClientSession() as http:
        yield SimControl(running, http)
    await running.stop()


def with_bind(settings: Settings, port: int, **bind: Any) -> Settings:
    """`settings` with one bind `b1` to the simulator, tuned for fast tests."""
    data = settings.model_dump()
    cfg = {
        "id": "b1",
        "port": port,
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "response_timeout": 2.0,
        "enquire_link_interval": 5.0,
        "window": 16,
    } | bind
    data["smpp"] = {"binds": [cfg]}
    return Settings.model_validate(data)


class EventLog:
    """Every event on the namespace's events exchange, collected by a temporary queue."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def of(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.items
            if e.get("type") == type_ and all(e.get(k) == v for k, v in match.items())
        ]

    async def wait(
        self, probe: Callable[[EventLog], Any], timeout: float = 10.0, what: str = ""
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe(self)
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what or probe}; events: {self.items[-5:]}")

    def statuses(self, message_id: str) -> list[str]:
        return [e["state"] for e in self.of("status", message_id=message_id)]


@pytest.fixture
async def events(amqp: AmqpConnection) -> AsyncIterator[EventLog]:
    """Collects events published in this test's namespace."""
    await amqp.declare()
    log = EventLog()
    ch = await amqp.channel(confirms=False)
    exchange = await ch.get_exchange(amqp.topology.events_exchange)
    queue = await ch.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, "#")

    async def on_message(message: Any) -> None:
        # Status events come packed, several to a message (`amqp/packing.py`).
        headers = dict(message.headers or {})
        if PACKED in headers:
            unpack(StatusEvent, message.body, headers)  # a pack must parse as status events
            found = json.loads(message.body)
        else:
            found = [json.loads(message.body)]
        log.items.extend(e | {"_key": message.routing_key} for e in found)

    await queue.consume(on_message, no_ack=True)
    yield log
    await ch.close()


@asynccontextmanager
async def running_service(settings: Settings, amqp: AmqpConnection) -> AsyncIterator[SmppService]:
    """The SMPP service, bound; its queues are registered for the namespace cleanup."""
    service = SmppService(settings, metrics_port=0)
    await amqp.declare(service.queue_specs())  # so the `amqp` fixture deletes them after
    await service.start()
    try:
        for w in service.workers.values():
            assert await w.bind.wait_bound(10), "bind did not come up"
        yield service
    finally:
        await service.stop()


class Jobs:
    """Publishes send jobs to a route's queue."""

    def __init__(self, amqp: AmqpConnection) -> None:
        self.amqp = amqp
        self.publisher = Publisher(amqp)
        self.n = 0

    async def send(self, text: str = "hello", route: str = "smpp:b1", **kw: Any) -> SendJob:
        self.n += 1
        fields: dict[str, Any] = {
            "message_id": f"m{self.n}-{time.monotonic_ns()}",
            "to": "+79160000000",
            "sender": "Test",
            "text": text,
            "route": route,
        } | kw
        job = SendJob(**fields)
        topo = self.amqp.topology
        await self.publisher.publish(
            Outgoing(topo.jobs_exchange, topo.job_routing_key(job.route), job)
        )
        return job


@pytest.fixture
async def jobs(amqp: AmqpConnection) -> AsyncIterator[Jobs]:
    j = Jobs(amqp)
    yield j
    await j.publisher.close()
