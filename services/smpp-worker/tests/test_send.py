"""Sending through the service to the simulator: encodings, split modes, outcomes."""

from __future__ import annotations

import pytest

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings

from .conftest import EventLog, Jobs, SimControl, running_service, with_bind

LONG_GSM = "Long GSM-7 text with extension chars {[€]} at every boundary. " * 6
LONG_LATIN1 = "Ça coûte 5 £, non ¥: Größe, façade, naïve, déjà vu. " * 5
LONG_UCS2 = "Привет, мир! Emoji 😀🎉 survive splitting: 👍🏽 and 🇷🇺. " * 5


def _sent(events: EventLog, message_id: str) -> list[dict]:
    return events.of("status", message_id=message_id, state="sent")


@pytest.mark.parametrize("split", ["udh", "sar", "payload"])
async def test_long_messages_arrive_intact_in_every_split_mode(
    settings: Settings,
    amqp: AmqpConnection,
    sim: SimControl,
    events: EventLog,
    jobs: Jobs,
    split: str,
) -> None:
    cases = [(LONG_GSM, 0, "gsm7", 0), (LONG_LATIN1, 3, "gsm7", 3), (LONG_UCS2, 0, "ucs2", 8)]
    for text, bind_dc, encoding, want_dc in cases:
        await sim.post("/reset")
        s = with_bind(settings, sim.sim.port, split=split, data_coding=bind_dc)
        async with running_service(s, amqp):
            job = await jobs.send(text, encoding=encoding)
            mid = job.message_id
            sent = await events.wait(lambda e, mid=mid: _sent(e, mid), what="sent")
        messages = await sim.sent()
        assert len(messages) == 1, messages
        msg = messages[0]
        assert msg["text"] == text
        assert msg["complete"]
        assert msg["data_coding"] == want_dc
        if split == "payload":
            assert msg["parts"] == 1 and msg["split"] == "payload"
        else:
            assert msg["parts"] > 1 and msg["split"] == split
        refs = [p["provider_id"] for p in sent[0]["parts"]]
        assert len(refs) == msg["parts"]
        # provider ids are normalised: the simulator's upper-case, zero-padded hex ids
        assert refs == [m.lower().lstrip("0") for m in msg["message_ids"]]


async def test_short_messages_addresses_and_options(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    s = with_bind(settings, sim.sim.port)
    async with running_service(s, amqp):
        a = await jobs.send("Hi there", sender="+79001112233", validity=3600, flash=True)
        b = await jobs.send("Тест", encoding="ucs2", sender="MyShop", dlr=False)
        for j in (a, b):
            await events.wait(lambda e, j=j: _sent(e, j.message_id))
    by_text = {m["text"]: m for m in await sim.sent()}
    first = by_text["Hi there"]
    assert (first["source"], first["pdus"][0]["source_ton"]) == ("79001112233", 1)
    assert first["destination"] == "79160000000"
    assert first["validity_period"] == "000000010000000R"
    assert first["data_coding"] == 0x10  # flash: message class 0
    assert first["registered_delivery"] == 1
    second = by_text["Тест"]
    assert (second["source"], second["pdus"][0]["source_ton"]) == ("MyShop", 5)
    assert second["data_coding"] == 8 and second["registered_delivery"] == 0


async def test_permanent_error_fails_the_job_with_the_status_name(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    await sim.config(errors=[["ESME_RINVDSTADR", 1]])
    async with running_service(with_bind(settings, sim.sim.port), amqp):
        job = await jobs.send("to nowhere")
        failed = await events.wait(
            lambda e: e.of("status", message_id=job.message_id, state="failed")
        )
    assert failed[0]["error_code"] == "ESME_RINVDSTADR"
    assert failed[0]["retryable"] is False
    assert events.statuses(job.message_id) == ["failed"]


async def test_transient_errors_are_retried_then_sent(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    await sim.config(errors=[["ESME_RSYSERR", 2]])
    async with running_service(with_bind(settings, sim.sim.port), amqp):
        job = await jobs.send("try again")
        await events.wait(lambda e: _sent(e, job.message_id), timeout=15)
    assert events.statuses(job.message_id) == ["sent"]
    stats = await sim.get("/stats")
    assert stats["errors_injected"] == 2 and stats["accepted"] == 1


async def test_transient_errors_until_attempts_run_out_fail_retryable(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    await sim.config(errors=[["ESME_RMSGQFUL", 0], ["ESME_RSYSERR", 100]])
    async with running_service(with_bind(settings, sim.sim.port), amqp):
        job = await jobs.send("never")
        failed = await events.wait(
            lambda e: e.of("status", message_id=job.message_id, state="failed"), timeout=20
        )
    assert failed[0]["error_code"] == "ESME_RSYSERR" and failed[0]["retryable"] is True
    assert (await sim.get("/stats"))["errors_injected"] == settings.workers.max_attempts


async def test_throttling_slows_down_recovers_and_drops_nothing(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    await sim.config(tps=100)
    s = with_bind(settings, sim.sim.port, window=32, tps=150)  # the SMSC allows less
    async with running_service(s, amqp) as service:
        sent = [await jobs.send(f"burst {i}") for i in range(300)]
        heartbeat = await events.wait(
            lambda e: e.of("heartbeat", state="throttled"), timeout=10, what="throttled"
        )
        await events.wait(
            lambda e: all(_sent(e, j.message_id) for j in sent), timeout=30, what="all sent"
        )
        rate = service.workers["b1"].bind.rate
        assert rate.throttle_events >= 1
        lowest = min(h["details"]["rate_limit"] for h in events.of("heartbeat"))
        assert lowest <= 75  # halved at least once
        await events.wait(
            lambda e: e.of("heartbeat")[-1]["details"]["rate_limit"] > lowest, what="recovery"
        )
    texts = sorted(m["text"] for m in await sim.sent())
    assert texts == sorted(f"burst {i}" for i in range(300))  # each exactly once
    assert (await sim.get("/stats"))["throttled"] > 0
    assert heartbeat[0]["details"]["throttled"] is True


async def test_canceled_job_is_skipped(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    from smsgw_shared.amqp import Outgoing, Publisher, Topology
    from smsgw_shared.messages import CancelNotice

    async with running_service(with_bind(settings, sim.sim.port), amqp) as service:
        pub = Publisher(amqp)
        await pub.publish(
            Outgoing(
                amqp.topology.events_exchange, Topology.CANCEL_KEY, CancelNotice(message_id="x1")
            )
        )
        await events.wait(lambda e: "x1" in service.canceled, what="cancel notice")
        await jobs.send("canceled", message_id="x1")
        ok = await jobs.send("not canceled")
        await events.wait(lambda e: _sent(e, ok.message_id))
        await pub.close()
    assert [m["text"] for m in await sim.sent()] == ["not canceled"]
    assert events.statuses("x1") == []


async def test_unanswered_submits_time_out_and_are_sent_again(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    await sim.config(submit_latency=1.0)  # answers come after the bind has given up
    s = with_bind(settings, sim.sim.port, response_timeout=0.2, enquire_link_interval=30)
    async with running_service(s, amqp) as service:
        job = await jobs.send("slow smsc")
        await events.wait(lambda e: service.workers["b1"].sender.duplicates >= 4, what="resends")
        await sim.config(submit_latency=0)
        await events.wait(lambda e: _sent(e, job.message_id), timeout=15)
        assert service.metrics.jobs.labels("b1", "retry")._value.get() >= 1
    copies = [m for m in await sim.sent() if m["text"] == "slow smsc"]
    assert len(copies) >= 5  # the SMSC got every copy: these are the counted duplicates
    assert events.statuses(job.message_id) == ["sent"]
