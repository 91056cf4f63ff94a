"""Sending through the simulator: GSM-7, UCS-2, multipart, pools, reports, errors, journal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from smsgw_modem.sim import Simulator
from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher, Topology
from smsgw_shared.messages import CancelNotice, SendJob
from smsgw_shared.testing import wait_for


def job(route: str = "modem:m1", **fields: Any) -> SendJob:
    values: dict[str, Any] = {
        "message_id": f"msg-{id(fields)}-{len(fields)}",
        "to": "+79160001234",
        "text": "Hello from smsgw",
        "route": route,
    }
    return SendJob.model_validate(values | fields)


async def test_gsm7_single_sent_then_delivered(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1)))
    j = job(message_id="g1")
    await worker.send(j)
    sent = (await events.wait_status("g1", "sent"))[0]
    assert events.status("g1", "sending")
    record = sim.device(1).state.sent[0]
    assert (record.recipient, record.text, record.encoding, record.srr) == (
        "+79160001234",
        "Hello from smsgw",
        "gsm7",
        True,
    )
    assert record.udh is None
    assert [(p.index, p.provider_id) for p in sent.parts] == [(1, str(record.mr))]
    assert sent.recipient == "+79160001234" and sent.job_id == j.job_id
    report = (await events.wait_status(None, "delivered"))[0]
    assert report.message_id is None and report.route == "modem:m1"
    assert report.provider_id == str(record.mr) and report.recipient == "+79160001234"
    assert report.occurred_at.tzinfo is not None


async def test_ucs2_multipart_over_pty(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1, pty=True)))
    text = "Съешь же ещё этих мягких французских булок, да выпей чаю. " * 3  # 177 chars
    await worker.send(job(message_id="u1", text=text, encoding="ucs2", dlr=False))
    sent = (await events.wait_status("u1", "sent"))[0]
    parts = sim.device(1).state.sent
    assert len(parts) == 3 and {p.encoding for p in parts} == {"ucs2"}
    assert [p.udh["seq"] for p in parts if p.udh] == [1, 2, 3]
    assert len({p.udh["ref"] for p in parts if p.udh}) == 1
    assert {p.udh["total"] for p in parts if p.udh} == {3}
    assert "".join(p.text or "" for p in parts) == text
    assert not any(p.srr for p in parts)
    assert [p.provider_id for p in sent.parts] == [str(p.mr) for p in parts]


async def test_gsm7_multipart_refs_differ_between_messages(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1)))
    text = "x" * 200 + "€"
    await worker.send(job(message_id="a", text=text))
    await events.wait_status("a", "sent")
    await worker.send(job(message_id="b", text=text))
    await events.wait_status("b", "sent")
    parts = sim.device(1).state.sent
    assert len(parts) == 4
    assert parts[0].text + parts[1].text == text  # type: ignore[operator]
    assert parts[0].udh and parts[2].udh and parts[0].udh["ref"] != parts[2].udh["ref"]


async def test_pool_is_shared_by_connected_modems(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    for n in (1, 2):
        sim.device(n).state.faults.send_latency = 0.2
    await worker.start(setup_modems(mk_modem(1), mk_modem(2)))
    await events.wait_connected("modem:m1")
    await events.wait_connected("modem:m2")
    for i in range(6):
        await worker.send(job("modem:*", message_id=f"p{i}", dlr=False))
    for i in range(6):
        await events.wait_status(f"p{i}", "sent")
    counts = [len(sim.device(n).state.sent) for n in (1, 2)]
    assert sum(counts) == 6 and min(counts) >= 1
    routes = {events.status(f"p{i}", "sent")[0].route for i in range(6)}
    assert routes == {"modem:m1", "modem:m2"}


async def test_undelivered_report(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    sim.device(1).state.reports.outcome = "undelivered"
    await worker.start(setup_modems(mk_modem(1)))
    await worker.send(job(message_id="d1"))
    sent = (await events.wait_status("d1", "sent"))[0]
    report = (await events.wait_status(None, "undelivered"))[0]
    assert report.provider_id == sent.parts[0].provider_id
    assert report.error_code == "TP_ST_65"


async def test_permanent_cms_error_fails_at_once(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    faults = sim.device(1).state.faults
    faults.cms_error, faults.cms_count = 21, 5  # short message transfer rejected
    await worker.start(setup_modems(mk_modem(1)))
    await worker.send(job(message_id="f1"))
    failed = (await events.wait_status("f1", "failed"))[0]
    assert failed.error_code == "CMS_21" and failed.retryable is False
    assert "rejected" in (failed.error or "")
    assert faults.cms_count == 4  # tried once, not retried


async def test_transient_cms_error_retried_then_failed(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    faults = sim.device(1).state.faults
    faults.cms_error, faults.cms_count = 500, 100
    await worker.start(setup_modems(mk_modem(1)))  # max_attempts 4, retry delays 0.2/0.5/1 s
    await worker.send(job(message_id="t1"))
    failed = (await events.wait_status("t1", "failed", timeout=20))[0]
    assert failed.error_code == "CMS_500" and failed.retryable is True
    assert faults.cms_count == 96  # four attempts
    assert not sim.device(1).state.sent


async def test_transient_error_then_success(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    faults = sim.device(1).state.faults
    faults.cms_error, faults.cms_count = 332, 1  # network timeout, once
    await worker.start(setup_modems(mk_modem(1)))
    await worker.send(job(message_id="t2"))
    await events.wait_status("t2", "sent")
    assert len(sim.device(1).state.sent) == 1
    assert not events.status("t2", "failed")


async def test_redelivered_job_is_not_sent_twice(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    settings = setup_modems(mk_modem(1))
    await worker.start(settings)
    j = job(message_id="r1", dlr=False)
    await worker.send(j)
    first = (await events.wait_status("r1", "sent"))[0]
    await worker.stop()  # "crash": a new worker process with the same state_dir
    await worker.start(settings)
    await worker.send(j)  # the broker redelivers the same job
    events_after = await events.wait_status("r1", "sent", count=2)
    assert events_after[1].event_id == first.event_id  # the recorded outcome, re-published
    assert len(sim.device(1).state.sent) == 1


async def test_canceled_job_is_skipped(
    sim: Simulator,
    worker: Any,
    events: Any,
    amqp: AmqpConnection,
    mk_modem: Callable[..., Any],
    setup_modems: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="smsgw_modem.service")
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    publisher = Publisher(amqp)
    await publisher.publish(
        Outgoing(amqp.topology.events_exchange, Topology.CANCEL_KEY, CancelNotice(message_id="c1"))
    )
    await publisher.close()

    async def cancel_taken() -> bool:  # the worker has it before the job arrives
        return any(getattr(r, "canceled_message_id", None) == "c1" for r in caplog.records)

    await wait_for(cancel_taken, timeout=10)
    await worker.send(job(message_id="c1"))
    await worker.send(job(message_id="c2"))
    await events.wait_status("c2", "sent")
    assert not events.status("c1")
    assert len(sim.device(1).state.sent) == 1
