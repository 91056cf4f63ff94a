"""Two binds to one SMSC account: the SMSC sends each receipt on whichever bind it likes
(the simulator: the first receiving session of that system_id), so about half of them
arrive on the bind that did not submit the message. Every message must still end
`delivered`, through the real worker, simulator and inbound processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from smsgw_shared.testing import free_port, wait_for
from tests.conftest import wait_status
from tests.e2e.stack import Stack


@pytest.fixture
async def stack(tmp_path, database_url, broker_url, amqp) -> AsyncIterator[Stack]:
    """This file's gateway (conftest's `client` talks to it): two binds, no modems."""
    s = Stack.in_test(tmp_path, amqp, database_url, broker_url, modems=0)
    s.ports["smsc"] = smsc = free_port()
    # Same host, port and system_id as b1: one account.
    s.write_config(extra=f'[[smpp.binds]]\nid = "b2"\nport = {smsc}\n')
    s.start("sim-smsc", "sim", "smsc")
    try:
        await s.wait_http(s.smsc_control + "/stats", timeout=120)
        s.start("inbound", "inbound")
        s.start("smpp-worker", "smpp-worker")
        s.start("api", "api")
        await s.wait_http(s.api_url + "/readyz", timeout=120)
        yield s
    finally:
        s.stop_all()


async def _both_bound(client: httpx.AsyncClient) -> bool:
    binds = (await client.get("/v1/routes")).json()["binds"]
    return {b["id"] for b in binds if b["connected"]} == {"b1", "b2"}


async def test_receipts_on_the_other_bind_of_the_account_are_matched(
    stack: Stack, client: httpx.AsyncClient
):
    await wait_for(lambda: _both_bound(client), timeout=60)
    ids: list[str] = []
    for i in range(20):
        route = "smpp:b1" if i % 2 else "smpp:b2"
        r = await client.post(
            "/v1/messages",
            json={"to": f"+7916100{i:04d}", "text": "shared account", "route": route},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["messages"][0]["id"])
    done = await asyncio.gather(
        *(wait_status(client, mid, {"delivered"}, timeout=60) for mid in ids)
    )
    sources = {
        (m["parts_detail"][0]["route"], h["source"])
        for m in done
        for h in m["history"]
        if h["state"] == "delivered"
    }
    # Receipts did cross: some part submitted on one bind got its receipt on the other.
    assert any(part != source for part, source in sources), sources
