"""Fault tests: a worker killed mid-send, the broker dropping every connection, the inbound
service and PostgreSQL restarted. Nothing accepted is lost; duplicates are counted."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess

import httpx

from tests.conftest import wait_status
from tests.e2e.stack import Stack


async def _send(client: httpx.AsyncClient, to: list[str], tag: str) -> dict[str, str]:
    """Send one message per number with a distinct text; returns id → text."""
    ids: dict[str, str] = {}
    for i, number in enumerate(to):
        text = f"{tag} #{i}"
        r = await client.post("/v1/messages", json={"to": number, "text": text})
        assert r.status_code == 202, r.text
        ids[r.json()["messages"][0]["id"]] = text
    return ids


async def _all_delivered(client: httpx.AsyncClient, ids: dict[str, str], timeout: float) -> None:
    await asyncio.gather(*(wait_status(client, i, {"delivered"}, timeout) for i in ids))


async def _modem_sends(stack: Stack) -> list[str]:
    texts: list[str] = []
    async with httpx.AsyncClient(base_url=stack.modem_control) as c:
        for n in range(1, stack.modems + 1):
            texts += [s["text"] for s in (await c.get(f"/modems/{n}/sent")).json()]
    return texts


async def test_modem_worker_killed_mid_send(stack: Stack, client: httpx.AsyncClient):
    async with httpx.AsyncClient(base_url=stack.modem_control) as c:
        for n in (1, 2):
            r = await c.post(f"/modems/{n}/faults", json={"send_latency": 0.3})
            assert r.status_code == 200, r.text
    ids = await _send(client, [f"+7921100{i:04d}" for i in range(16)], "kill")
    # Kill only once both modems hold a job (a PDU taken, its +CMGS answer not yet given).
    held = await _both_modems_hold_a_job(stack)
    stack.stop("modem-worker", signal.SIGKILL)
    stack.start("modem-worker", "modem-worker")
    await _all_delivered(client, ids, timeout=60)
    sent = collections.Counter(await _modem_sends(stack))
    assert set(ids.values()) <= set(sent)  # every message went out
    assert sum(sent[t] for t in ids.values()) > held["sent"]  # the new worker sent the rest
    duplicates = sum(n - 1 for n in sent.values() if n > 1)
    # At most the jobs that were in the modems' hands when the worker died are sent twice.
    assert duplicates <= 2, sent


async def _both_modems_hold_a_job(stack: Stack) -> dict[str, int]:
    """Poll the modem simulator until every modem is in the middle of a send; returns the
    number of messages sent by then."""
    async with httpx.AsyncClient(base_url=stack.modem_control) as c:
        for _ in range(1000):
            modems = (await c.get("/modems")).json()
            if all(m["submitting"] for m in modems):
                return {"sent": sum(m["sent"] for m in modems)}
            await asyncio.sleep(0.02)
    raise AssertionError(f"the modems never both held a job: {modems}")


async def test_broker_drops_every_connection(stack: Stack, client: httpx.AsyncClient):
    before = await _send(
        client,
        [f"+7921200{i:04d}" for i in range(5)] + [f"+7916200{i:04d}" for i in range(5)],
        "drop-a",
    )
    await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "close_all_connections", "fault test"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    after = await _send(
        client,
        [f"+7921201{i:04d}" for i in range(5)] + [f"+7916201{i:04d}" for i in range(5)],
        "drop-b",
    )
    await _all_delivered(client, before | after, timeout=60)


async def test_inbound_restarted(stack: Stack, client: httpx.AsyncClient):
    stack.stop("inbound")
    ids = await _send(
        client,
        [f"+7921300{i:04d}" for i in range(5)] + [f"+7916300{i:04d}" for i in range(5)],
        "inbound-down",
    )
    await asyncio.sleep(2)  # workers send and report while nobody projects
    stack.start("inbound", "inbound")
    await _all_delivered(client, ids, timeout=60)


async def test_api_restarted_keeps_everything(stack: Stack, client: httpx.AsyncClient):
    ids = await _send(client, [f"+7921400{i:04d}" for i in range(5)], "api-restart")
    stack.stop("api")
    stack.start("api", "api")
    await stack.wait_http(stack.api_url + "/readyz")
    await _all_delivered(client, ids, timeout=60)
