"""Cross-service fixtures: the whole gateway as processes (`stack`) and a client on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.stack import Stack


@pytest.fixture
async def stack(tmp_path, database_url, broker_url, amqp) -> AsyncIterator[Stack]:
    s = Stack.in_test(tmp_path, amqp, database_url, broker_url)
    s.write_config()
    s.start("sim-smsc", "sim", "smsc")
    s.start("sim-modem", "sim", "modem")
    try:
        # Each simulator opens its control port after its SMPP / modem ports: once it
        # answers, the workers find something to connect to.
        await s.wait_http(s.smsc_control + "/stats", timeout=120)
        await s.wait_http(s.modem_control + "/modems", timeout=120)
        s.start("inbound", "inbound")
        s.start("modem-worker", "modem-worker")
        s.start("smpp-worker", "smpp-worker")
        s.start("api", "api")
        # Generous: on a loaded 2-core host importing a service alone can take 10 s.
        await s.wait_http(s.api_url + "/readyz", timeout=120)
        for port in ("inbound", "modem_metrics", "smpp_metrics"):
            await s.wait_http(f"http://127.0.0.1:{s.ports[port]}/healthz", timeout=120)
        yield s
    finally:
        s.stop_all()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=30
    ) as c:
        yield c


async def wait_status(
    client: httpx.AsyncClient, mid: str, states: set[str], timeout: float = 30
) -> dict:
    """Poll GET /v1/messages/{id} until its status is one of `states`."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: dict = {}
    while asyncio.get_running_loop().time() < deadline:
        r = await client.get(f"/v1/messages/{mid}")
        last = r.json()
        if last.get("status") in states:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"message {mid} stuck: {last}")
