"""Real faults under steady load, one after another on one running gateway: the SMPP worker
and the inbound service SIGKILLed and started again, the SMSC dropping the bind with a full
window and then answering nothing, a modem hanging, vanishing and sending garbage, a
webhook receiver down for a while, every broker connection force-closed, RabbitMQ's
application stopped and started, PostgreSQL really restarted.

Counted at the simulators and in the store: every accepted message reaches `delivered`
(0 lost), goes out at least once, is sent twice no more often than the windows in flight
allow, and its `delivered` webhook arrives. Sends refused while the store restarts (503)
were never accepted and are not counted. The services stopped here are brought back and
waited for even when the test fails.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

from smsgw_shared.store.direct import asyncpg_dsn
from smsgw_shared.testing import free_port, wait_for
from tests.e2e.stack import Stack

RATE = 12.0  # sends a second, half to the SMSC, half to the modems


def _run(*cmd: str, timeout: float = 120) -> None:
    subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)


async def _postgres_up(database_url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(make_url(database_url)), timeout=3)
            await conn.execute("SELECT 1")
            await conn.close()
            return
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def postgres_restarted(database_url: str) -> AsyncIterator[None]:
    """`pg_ctlcluster … restart`; PostgreSQL is started again and waited for, whatever happens."""
    version = sorted(os.listdir("/etc/postgresql"))[0]
    ctl = ("pg_ctlcluster", "--skip-systemctl-redirect", version, "main")
    try:
        await asyncio.to_thread(_run, *ctl, "restart", "-m", "fast")
        yield
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            await asyncio.to_thread(_run, *ctl, "start")
        await _postgres_up(database_url)


@contextlib.asynccontextmanager
async def rabbit_app_stopped(seconds: float) -> AsyncIterator[None]:
    """`rabbitmqctl stop_app` for a while; started again and waited for, whatever happens."""
    try:
        await asyncio.to_thread(_run, "rabbitmqctl", "stop_app")
        await asyncio.sleep(seconds)
        yield
    finally:
        await asyncio.to_thread(_run, "rabbitmqctl", "start_app")
        await asyncio.to_thread(_run, "rabbitmqctl", "await_startup")


class Receiver:
    """A webhook receiver that can be down; counts `delivered` statuses by message id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.delivered: collections.Counter[str] = collections.Counter()
        self.runner: web.AppRunner | None = None

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        data = body.get("data", {})
        if data.get("status") == "delivered":
            self.delivered[str(data.get("message_id"))] += 1
        return web.Response(status=204)


class Load:
    """Single-recipient sends at a steady rate; what was accepted and what was refused."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.accepted: dict[str, str] = {}  # message id → text
        self.refused: collections.Counter[str] = collections.Counter()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        tag = uuid.uuid4().hex[:6]
        n = 0
        while not self.stop.is_set():
            started = time.monotonic()
            to = f"+7916{n:07d}" if n % 2 == 0 else f"+7921{n:07d}"
            text = f"fault {tag} #{n}"
            n += 1
            try:
                r = await self.client.post("/v1/messages", json={"to": to, "text": text})
            except httpx.HTTPError as exc:
                self.refused[type(exc).__name__] += 1
            else:
                if r.status_code == 202:
                    self.accepted[r.json()["messages"][0]["id"]] = text
                else:
                    self.refused[str(r.status_code)] += 1
            await asyncio.sleep(max(0.0, 1 / RATE - (time.monotonic() - started)))


async def _statuses(database_url: str, ids: list[str]) -> collections.Counter[str]:
    conn = await asyncpg.connect(asyncpg_dsn(make_url(database_url)))
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) FROM messages WHERE id = ANY($1::uuid[]) GROUP BY status",
            ids,
        )
    finally:
        await conn.close()
    return collections.Counter({r[0]: r[1] for r in rows})


async def _sent_texts(stack: Stack) -> collections.Counter[str]:
    texts: collections.Counter[str] = collections.Counter()
    async with httpx.AsyncClient(timeout=30) as c:
        for m in (await c.get(f"{stack.smsc_control}/sent")).json():
            texts[m.get("text", "")] += 1
        for n in range(1, stack.modems + 1):
            for m in (await c.get(f"{stack.modem_control}/modems/{n}/sent")).json():
                texts[m.get("text", "")] += 1
    return texts


@pytest.fixture
async def fault_stack(
    tmp_path: Path, database_url: str, broker_url: str, amqp: Any
) -> AsyncIterator[Stack]:
    s = Stack.in_test(
        tmp_path,
        amqp,
        database_url,
        broker_url,
        webhook_retry="[0.5, 1.0, 2.0, 4.0, 8.0]",
        bind_extra="response_timeout = 2.0\nreconnect_max = 2.0\nwindow = 16",
    )
    s.write_config()
    s.start("sim-smsc", "sim", "smsc")
    s.start("sim-modem", "sim", "modem")
    await asyncio.sleep(0.5)
    for name in ("inbound", "modem-worker", "smpp-worker", "api"):
        s.start(name, name)
    try:
        await s.wait_http(s.api_url + "/readyz", timeout=120)
        for port in ("inbound", "modem_metrics", "smpp_metrics"):
            await s.wait_http(f"http://127.0.0.1:{s.ports[port]}/healthz", timeout=120)
        yield s
    finally:
        s.stop_all()


@pytest.mark.timeout(900)  # ~1 min alone; under a whole suite on 2 cores it took over 2
async def test_nothing_accepted_is_lost_through_real_faults(
    fault_stack: Stack, database_url: str
) -> None:
    stack = fault_stack
    receiver = Receiver()
    await receiver.up()
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with (
        httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as client,
        httpx.AsyncClient(timeout=30) as sims,
    ):
        r = await client.post(
            "/v1/webhooks",
            json={"url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["message.status"]},
        )
        assert r.status_code == 201, r.text
        load = Load(client)
        driver = asyncio.create_task(load.run())
        smsc, modems = stack.smsc_control, stack.modem_control
        try:
            await asyncio.sleep(2)
            # The SMPP worker and the inbound service killed mid-flow.
            stack.stop("smpp-worker", signal.SIGKILL)
            await asyncio.sleep(1)
            stack.start("smpp-worker", "smpp-worker")
            stack.stop("inbound", signal.SIGKILL)
            await asyncio.sleep(1)
            stack.start("inbound", "inbound")
            await asyncio.sleep(2)
            # The SMSC keeps its answers back, then drops the bind with the window full.
            await sims.post(f"{smsc}/config", json={"hold": True})
            await asyncio.sleep(1.5)
            await sims.post(f"{smsc}/disconnect", json={"mode": "close"})
            await sims.post(f"{smsc}/release")
            await asyncio.sleep(2)
            # The SMSC answers nothing past the worker's response timeout (2 s).
            await sims.post(f"{smsc}/config", json={"hold": True})
            await asyncio.sleep(4)
            await sims.post(f"{smsc}/release")
            # A modem hangs, then sends garbage, then vanishes for a while.
            await sims.post(f"{modems}/modems/1/faults", json={"hang": True, "duration": 4})
            await sims.post(f"{modems}/modems/2/faults", json={"garbage": 20})
            await asyncio.sleep(4)
            await sims.post(f"{modems}/modems/2/faults", json={"gone": 3})
            await asyncio.sleep(4)
            # The webhook receiver is down for a while.
            await receiver.down()
            await asyncio.sleep(4)
            await receiver.up()
            # Every broker connection force-closed; then RabbitMQ's application stopped.
            await asyncio.to_thread(_run, "rabbitmqctl", "close_all_connections", "real-fault test")
            await asyncio.sleep(3)
            async with rabbit_app_stopped(4):
                pass
            await asyncio.sleep(4)
            # PostgreSQL restarted.
            async with postgres_restarted(database_url):
                pass
            await asyncio.sleep(4)
        finally:
            load.stop.set()
            await driver
            await sims.delete(f"{modems}/modems/1/faults")
            await sims.delete(f"{modems}/modems/2/faults")

        ids = list(load.accepted)
        assert len(ids) > 200, (len(ids), load.refused)
        deadline = time.monotonic() + 240
        while True:
            statuses = await _statuses(database_url, ids)
            if statuses.get("delivered", 0) == len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert statuses == {"delivered": len(ids)}, (statuses, load.refused)

        sent = await _sent_texts(stack)
        texts = set(load.accepted.values())
        assert texts <= set(sent), sorted(texts - set(sent))[:10]
        duplicates = sum(sent[t] - 1 for t in texts if sent[t] > 1)
        # At most a window of 16 per SMPP incident (kill, full-window drop, silence, broker
        # drop, broker stop) and the modems' sends in hand.
        assert duplicates <= 5 * 16 + 4, duplicates

        async def all_hooked() -> bool:
            return set(ids) <= set(receiver.delivered)

        with contextlib.suppress(AssertionError):
            await wait_for(all_hooked, max(1.0, deadline - time.monotonic()), 0.5)
        missing = set(ids) - set(receiver.delivered)
        assert not missing, (len(missing), sorted(missing)[:5])
    await receiver.down()
    print(
        f"accepted {len(ids)}, refused {dict(load.refused)}, duplicates at the simulators "
        f"{duplicates}, webhook deliveries {sum(receiver.delivered.values())}"
    )
