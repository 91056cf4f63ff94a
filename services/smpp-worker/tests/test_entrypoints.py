"""The async entry points the command line calls: `service.run` and `sim.run_simulator`."""

from __future__ import annotations

import asyncio

import aiohttp

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings
from smsgw_shared.testing import free_port
from smsgw_smpp.service import SmppService, run
from smsgw_smpp.sim import run_simulator

from .conftest import EventLog, Jobs, with_bind


async def test_run_simulator_and_service_until_stop(
    settings: Settings, amqp: AmqpConnection, events: EventLog, jobs: Jobs
) -> None:
    port, control, metrics = free_port(), free_port(), free_port()
    sim_stop, svc_stop = asyncio.Event(), asyncio.Event()
    sim_task = asyncio.create_task(run_simulator(settings, sim_stop, "127.0.0.1", port, control))
    s = with_bind(settings, port, pools=["bulk"])
    await amqp.declare(SmppService(s).queue_specs())  # registered for cleanup
    svc_task = asyncio.create_task(run(s, svc_stop, ["b1"], metrics_port=metrics))
    try:
        hb = await events.wait(lambda e: e.of("heartbeat", state="bound"), timeout=15)
        assert hb[0]["route"] == "smpp:b1" and hb[0]["kind"] == "smpp"
        await events.wait(lambda e: e.of("heartbeat")[-1]["details"]["consuming"])
        # own queue, the smpp:* pool and the named pool all feed this bind
        sent = [await jobs.send(f"via {r}", route=r) for r in ("smpp:b1", "smpp:*", "pool:bulk")]
        for j in sent:
            await events.wait(lambda e, j=j: e.of("status", message_id=j.message_id, state="sent"))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{metrics}/metrics") as r:
                body = await r.text()
            assert 'smsgw_smpp_submits_total{bind="b1",status="ESME_ROK"} 3.0' in body
            assert "smsgw_smpp_submit_latency_seconds_bucket" in body
            async with http.get(f"http://127.0.0.1:{metrics}/readyz") as r:
                assert r.status == 200
            async with http.get(f"http://127.0.0.1:{control}/stats") as r:
                assert (await r.json())["accepted"] == 3
    finally:
        svc_stop.set()
        await asyncio.wait_for(svc_task, 30)
        sim_stop.set()
        await asyncio.wait_for(sim_task, 10)
    last = events.of("heartbeat")[-1]
    assert last["state"] == "stopped" and last["connected"] is False
