"""What comes back from the SMSC: receipts (both forms, id formats, early, duplicate),
incoming SMS (single, multipart), query_sm (local and over RabbitMQ), odd PDUs."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import pytest

from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher
from smsgw_shared.config import Settings
from smsgw_shared.testing.helpers import wait_for
from smsgw_smpp import pdu as sp
from smsgw_smpp.rpc import SmppQueryReply, SmppQueryRequest

from .conftest import EventLog, Jobs, SimControl, running_service, with_bind


def _receipts(events: EventLog, provider_id: str) -> list[dict]:
    return [e for e in events.of("status", message_id=None) if e["provider_id"] == provider_id]


async def _send_and_get_ids(events: EventLog, jobs: Jobs, text: str = "dlr me") -> list[str]:
    job = await jobs.send(text)
    sent = await events.wait(lambda e: e.of("status", message_id=job.message_id, state="sent"))
    return [p["provider_id"] for p in sent[0]["parts"]]


@pytest.mark.parametrize(
    ("receipt_form", "sim_ids", "receipt_ids", "bind"),
    [
        ("tlv", "hex", "same", {"id_format": "hex"}),
        ("text", "hex", "same", {"id_format": "hex"}),
        ("text", "hex", "decimal", {"id_format": "hex", "receipt_id_format": "decimal"}),
        ("both", "decimal", "same", {"id_format": "decimal"}),
        ("text", "decimal", "same", {"id_format": "auto"}),
    ],
)
async def test_receipts_match_the_sent_provider_ids(
    settings: Settings,
    amqp: AmqpConnection,
    sim: SimControl,
    events: EventLog,
    jobs: Jobs,
    receipt_form: str,
    sim_ids: str,
    receipt_ids: str,
    bind: dict,
) -> None:
    await sim.config(
        receipt_form=receipt_form,
        id_format=sim_ids,
        receipt_id_format=receipt_ids,
        outcomes={"UNDELIV": 1},
        receipt_errors={"UNDELIV": "034"},
    )
    async with running_service(with_bind(settings, sim.sim.port, **bind), amqp) as service:
        (pid,) = await _send_and_get_ids(events, jobs)
        (receipt,) = await events.wait(lambda e: _receipts(e, pid))
        assert receipt["state"] == "undelivered"
        assert receipt["route"] == "smpp:b1"
        assert receipt["recipient"] == "+79160000000"
        if receipt_form != "tlv":
            assert receipt["error_code"] == "034"
        # counted once the broker confirmed the event, which the test may see before that
        counter = service.metrics.receipts.labels("b1", "undelivered")

        async def counted() -> bool:
            return bool(counter._value.get() == 1)

        await wait_for(counted, timeout=5)
    stats = await sim.get("/stats")
    assert stats["deliver_resp"] == {"ESME_ROK": 1}


async def test_early_duplicate_and_intermediate_receipts(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    await sim.config(early_receipts=True, duplicate_receipts=True)
    async with running_service(with_bind(settings, sim.sim.port), amqp):
        (pid,) = await _send_and_get_ids(events, jobs, "early")
        receipts = await events.wait(lambda e: len(_receipts(e, pid)) == 2 and _receipts(e, pid))
        # written before the submit_sm_resp: published before (or with) the `sent` event
        assert {r["state"] for r in receipts} == {"delivered"}
        await sim.config(early_receipts=False, duplicate_receipts=False, intermediate=True)
        (pid2,) = await _send_and_get_ids(events, jobs, "intermediate")
        states = await events.wait(
            lambda e: len(_receipts(e, pid2)) == 2 and [r["state"] for r in _receipts(e, pid2)]
        )
        # two deliver_sm 50 ms apart, handled concurrently: either may be published first
        assert sorted(states) == ["delivered", "enroute"]


async def test_receipt_for_a_long_message_names_each_part(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    async with running_service(with_bind(settings, sim.sim.port), amqp):
        pids = await _send_and_get_ids(events, jobs, "x" * 400)
        assert len(pids) == 3
        for pid in pids:
            await events.wait(lambda e, pid=pid: _receipts(e, pid))


@pytest.mark.parametrize(
    ("body", "want_text", "want_encoding"),
    [
        ({"text": "Hello {world} €", "data_coding": 0}, "Hello {world} €", "gsm7"),
        ({"text": "Größe ½", "data_coding": 3}, "Größe ½", "latin1"),
        ({"text": "Привет 😀", "data_coding": 8}, "Привет 😀", "ucs2"),
        ({"hex": "cafe0102", "data_coding": 4}, "cafe0102", "binary"),
    ],
)
async def test_incoming_single_sms(
    settings: Settings,
    amqp: AmqpConnection,
    sim: SimControl,
    events: EventLog,
    body: dict,
    want_text: str,
    want_encoding: str,
) -> None:
    async with running_service(with_bind(settings, sim.sim.port), amqp):
        r = await sim.post("/inject", body | {"from": "79161234567", "to": "4444"})
        assert r["statuses"] == ["ESME_ROK"]  # answered only after the event was confirmed
        (part,) = await events.wait(lambda e: e.of("inbound_part"))
    assert part["text"] == want_text and part["encoding"] == want_encoding
    assert part["sender"] == "+79161234567" and part["recipient"] == "4444"
    assert part["concat"] is None and part["_key"] == "inbound.smpp.b1"


@pytest.mark.parametrize(("split", "ref_bits"), [("udh", 8), ("udh", 16), ("sar", 8)])
async def test_incoming_multipart_sms(
    settings: Settings,
    amqp: AmqpConnection,
    sim: SimControl,
    events: EventLog,
    split: str,
    ref_bits: int,
) -> None:
    text = "Длинное входящее сообщение 😀 " * 8
    async with running_service(with_bind(settings, sim.sim.port), amqp):
        body = {"text": text, "data_coding": 8, "split": split, "ref_bits": ref_bits}
        r = await sim.post("/inject", body | {"reverse": True})
        assert set(r["statuses"]) == {"ESME_ROK"} and r["parts"] > 1
        parts = await events.wait(
            lambda e: len(e.of("inbound_part")) == r["parts"] and e.of("inbound_part")
        )
    ordered = sorted(parts, key=lambda p: p["concat"]["seq"])
    assert "".join(p["text"] for p in ordered) == text
    assert {p["concat"]["total"] for p in parts} == {r["parts"]}
    assert len({p["concat"]["ref"] for p in parts}) == 1


async def test_query_sm_locally_and_over_rabbitmq(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    await sim.config(dlr_delay=30)  # still en route while we ask
    async with running_service(with_bind(settings, sim.sim.port, id_format="hex"), amqp) as svc:
        (pid,) = await _send_and_get_ids(events, jobs)
        answer = await svc.query("b1", pid, "Test")
        assert answer["message_state"] == "ENROUTE" and answer["final_date"] is None
        await sim.post("/receipt", {"message_id": pid.upper().zfill(10), "stat": "DELIVRD"})
        answer = await svc.query("b1", pid, "Test")
        assert answer["message_state"] == "DELIVERED" and answer["state"] == "delivered"
        assert answer["final_date"] is not None

        # the same over RabbitMQ, as the API will ask
        ch = await amqp.connection.channel()
        reply_q = await ch.declare_queue(exclusive=True, auto_delete=True)
        replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await reply_q.consume(replies.put, no_ack=True)
        pub = Publisher(amqp)
        for provider_id in (pid, "ffffffffff"):
            req = SmppQueryRequest(
                request_id=str(uuid.uuid4()), provider_id=provider_id, reply_to=reply_q.name
            )
            await pub.publish(Outgoing(amqp.topology.rpc_exchange, "smpp.b1", req))
            msg = await asyncio.wait_for(replies.get(), 10)
            assert msg.correlation_id == req.request_id
            reply = SmppQueryReply.from_bytes(msg.body)
            if provider_id == pid:
                assert reply.ok and reply.message_state == "DELIVERED"
            else:
                assert not reply.ok and "ESME_RQUERYFAIL" in (reply.error or "")
        assert json.loads(msg.body)["bind_id"] == "b1"
        await pub.close()
        await ch.close()


async def test_odd_pdus_from_the_smsc_do_not_kill_the_bind(
    settings: Settings, amqp: AmqpConnection, sim: SimControl, events: EventLog, jobs: Jobs
) -> None:
    async with running_service(with_bind(settings, sim.sim.port), amqp) as service:
        bind = service.workers["b1"].bind
        vendor_tlv = sp.encode(
            sp.DELIVER_SM,
            900,
            {"source_addr": "79161234567", "destination_addr": "1", "short_message": b"tlv"},
            {0x1401: b"vendor", 0x1500: b""},
        )
        truncated_body = sp.HEADER.pack(16 + 5, sp.DELIVER_SM, 0, 901) + b"\x00\x01\x01ab"
        bad_tlv = sp.encode(sp.DELIVER_SM, 902, {"short_message": b"x"}) + b"\x14\x01\x00"
        bad_tlv = sp.HEADER.pack(len(bad_tlv), sp.DELIVER_SM, 0, 902) + bad_tlv[16:]
        unknown_command = sp.HEADER.pack(20, 0x00000077, 0, 903) + b"abcd"
        stray_response = sp.encode(sp.SUBMIT_SM | sp.RESP, 123456, {"message_id": "nobody"})
        generic_nack = sp.encode(sp.GENERIC_NACK, 0, status=0x03)
        for raw in (
            vendor_tlv,
            truncated_body,
            bad_tlv,
            unknown_command,
            stray_response,
            generic_nack,
        ):
            await sim.post("/inject_raw", {"hex": raw.hex()})
        await events.wait(lambda e: e.of("inbound_part", text="tlv"))

        async def nacked() -> bool:  # truncated, bad TLV, unknown command
            return (await sim.get("/stats"))["generic_nacks_received"] >= 3

        await wait_for(nacked, timeout=10)
        # A send's answer comes after every injected PDU on the stream: once it is in, the
        # bind has read them all, and it is still the first connection.
        await _send_and_get_ids(events, jobs, "still works")
        assert bind.connected and bind.reconnects == 0
        assert (await sim.get("/stats"))["generic_nacks_received"] == 3

        # A stream that lost its framing cannot be trusted: reconnect, lose nothing.
        await sim.post("/inject_raw", {"hex": "ffffffff00000000"})
        await events.wait(lambda e: bind.reconnects == 1 and bind.connected, what="reconnect")
        await _send_and_get_ids(events, jobs, "after garbage")
    assert [m["text"] for m in await sim.sent()] == ["still works", "after garbage"]
