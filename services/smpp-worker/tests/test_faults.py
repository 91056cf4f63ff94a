"""Connection life: a dropped session with a full window, unbind from the SMSC, refused binds,
transmitter + receiver pairs, graceful shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings

from .conftest import EventLog, Jobs, SimControl, running_service, with_bind


def _all_sent(events: EventLog, ids: list[str]) -> bool:
    sent = {e["message_id"] for e in events.of("status", state="sent")}
    return all(i in sent for i in ids)


async def test_disconnect_with_a_full_window_loses_nothing(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    await sim.config(hold=True)  # accept submit_sm but keep every response back
    s = with_bind(settings, sim.sim.port, window=16)
    async with running_service(s, amqp) as service:
        sender = service.workers["b1"].sender
        ids = [(await jobs.send(f"window {i}")).message_id for i in range(60)]
        await events.wait(lambda e: sim.server.stats.submits >= 16, what="window full")
        assert service.workers["b1"].bind.in_flight == 16
        await sim.post("/disconnect")
        await sim.config(hold=False)  # the held responses belonged to the dropped session
        await events.wait(lambda e: _all_sent(e, ids), timeout=30, what="all sent")
        assert sender.duplicates >= 16  # the unanswered window was sent again
        assert service.workers["b1"].bind.reconnects >= 1
    texts = Counter(m["text"] for m in await sim.sent())
    assert set(texts) == {f"window {i}" for i in range(60)}  # nothing lost
    # the SMSC got the unanswered window twice (a slow machine may add a timed-out resend)
    assert sum(texts.values()) - 60 >= 16
    assert all(len(events.statuses(i)) == 1 for i in ids)


async def test_dropped_mid_stream_and_unbind_from_smsc_rebind(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    async with running_service(with_bind(settings, sim.sim.port), amqp) as service:
        bind = service.workers["b1"].bind
        await sim.config(drop_after=5)
        ids = [(await jobs.send(f"drop {i}")).message_id for i in range(20)]
        await events.wait(lambda e: _all_sent(e, ids), timeout=20, what="all sent")
        assert bind.reconnects == 1
        await sim.post("/disconnect", {"mode": "unbind"})
        await events.wait(lambda e: bind.reconnects == 2 and bind.connected, what="rebind")
        job = await jobs.send("after unbind")
        await events.wait(lambda e: _all_sent(e, [job.message_id]))
        assert service.metrics.reconnects.labels("b1")._value.get() == 2
    texts = {m["text"] for m in await sim.sent()}
    assert texts == {f"drop {i}" for i in range(20)} | {"after unbind"}


async def test_refused_bind_backs_off_and_reports_state(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    s = with_bind(settings, sim.sim.port, password="wrong", reconnect_min=0.1, reconnect_max=0.2)
    from smsgw_smpp.service import SmppService

    service = SmppService(s, metrics_port=0)
    await amqp.declare(service.queue_specs())
    await service.start()
    try:
        job = await jobs.send("waits in the queue")
        hb = await events.wait(lambda e: e.of("heartbeat", connected=False))
        assert hb[0]["state"] in ("connecting", "disconnected")
        await events.wait(lambda e: sim.server.stats.bind_failures >= 3, what="retries")
        await sim.config(password="wrong")  # the SMSC now accepts the bind's password
        await events.wait(lambda e: _all_sent(e, [job.message_id]), what="sent after bind")
        await events.wait(lambda e: e.of("heartbeat", state="bound"))
    finally:
        await service.stop()


async def test_transmitter_receiver_pair_and_graceful_unbind(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    s = with_bind(settings, sim.sim.port, mode="transmitter_receiver")
    async with running_service(s, amqp) as service:
        kinds = sorted(x["kind"] for x in (await sim.get("/stats"))["sessions"])
        assert kinds == ["receiver", "transmitter"]
        job = await jobs.send("pair")
        sent = await events.wait(lambda e: e.of("status", message_id=job.message_id))
        pid = sent[0]["provider_id"]
        await events.wait(lambda e: e.of("status", provider_id=pid, state="delivered"))
        r = await sim.post("/inject", {"text": "mo over the receiver"})
        assert r["statuses"] == ["ESME_ROK"]
        assert service.workers["b1"].bind.state == "bound"
    await asyncio.sleep(0.05)
    stats = await sim.get("/stats")
    assert stats["unbinds_received"] == 2 and stats["sessions"] == []
