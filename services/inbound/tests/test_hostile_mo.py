"""Incoming SMS whose content PostgreSQL would refuse as it came are stored all the same:
characters it cannot hold (NUL, lone surrogates) replaced with U+FFFD and the original kept
as hex, over-long numbers kept in full, absurd concatenation info taken as a single part."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound.received import Receiver
from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings
from smsgw_shared.messages import Concat, InboundPart
from smsgw_shared.store.repos.webhooks import WebhookRepository
from smsgw_shared.store.schema import inbound_messages
from smsgw_shared.testing.helpers import wait_for

from .conftest import clear_webhooks, http_receiver, logged, publish, running


def sender_() -> str:
    return "+7997" + uuid.uuid4().hex[:7]


def digits(n: int) -> str:
    return "".join(random.choice("0123456789") for _ in range(n))


async def rows_of(engine: AsyncEngine, sender: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        res = await conn.execute(
            select(inbound_messages)
            .where(inbound_messages.c.sender == sender)
            .order_by(inbound_messages.c.received_at)
        )
        return [dict(r._mapping) for r in res]


async def received_data(engine: AsyncEngine, sender: str) -> list[dict[str, Any]]:
    """The `data` of the `message.received` events from `sender`."""
    return [
        e["payload"]["data"]
        for e in await logged(engine, type="message.received")
        if e["payload"]["data"].get("from") == sender
    ]


@pytest.fixture
def receiver(engine: AsyncEngine) -> Receiver:
    return Receiver(engine, reassembly_timeout=30.0)


async def test_nul_in_ucs2_text_is_replaced_and_kept_as_hex(
    receiver: Receiver, engine: AsyncEngine
) -> None:
    sender = sender_()
    part = InboundPart(route="smpp:b1", sender=sender, text="a\x00b", encoding="ucs2")
    assert await receiver.store(part) == "stored"
    [row] = await rows_of(engine, sender)
    assert row["text"] == "a\ufffdb" and row["raw_hex"] == "006100000062"
    [data] = await received_data(engine, sender)
    assert data["text"] == "a\ufffdb" and data["raw_hex"] == "006100000062"


async def test_nul_in_an_8_bit_charset_is_kept_as_its_octet(
    receiver: Receiver, engine: AsyncEngine
) -> None:
    sender = sender_()
    part = InboundPart(route="smpp:b1", sender=sender, text="\x00é", encoding="latin1")
    assert await receiver.store(part) == "stored"
    [row] = await rows_of(engine, sender)
    assert row["text"] == "\ufffdé" and row["raw_hex"] == "00e9"


async def test_lone_surrogate_is_replaced_and_kept_as_hex(
    receiver: Receiver, engine: AsyncEngine
) -> None:
    # JSON cannot carry a lone surrogate, but a part built in-process can hold one.
    sender = sender_()
    part = InboundPart(route="modem:m1", sender=sender, text="x\ud800y", encoding="ucs2")
    assert await receiver.store(part) == "stored"
    [row] = await rows_of(engine, sender)
    assert row["text"] == "x\ufffdy" and row["raw_hex"] == "0078d8000079"


async def test_clean_text_has_no_raw_hex(receiver: Receiver, engine: AsyncEngine) -> None:
    sender = sender_()
    part = InboundPart(route="modem:m1", sender=sender, text="plain \ufffd", encoding="ucs2")
    assert await receiver.store(part) == "stored"
    [row] = await rows_of(engine, sender)
    assert row["text"] == "plain \ufffd" and row["raw_hex"] is None
    [data] = await received_data(engine, sender)
    assert "raw_hex" not in data


async def test_replaced_text_keeps_its_own_message_id(
    receiver: Receiver, engine: AsyncEngine
) -> None:
    """The same SMS read twice is one message; one that only reads the same once its NUL is
    replaced (a real U+FFFD in that place) is another."""
    sender = sender_()
    scts = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    nul = InboundPart(
        route="modem:m1", sender=sender, text="a\x00", encoding="ucs2", smsc_timestamp=scts
    )
    assert await receiver.store(nul) == "stored"
    again = nul.model_copy(update={"event_id": uuid.uuid4().hex})
    assert await receiver.store(again) == "duplicate"
    real = nul.model_copy(update={"event_id": uuid.uuid4().hex, "text": "a\ufffd"})
    assert await receiver.store(real) == "stored"
    rows = await rows_of(engine, sender)
    assert sorted((r["text"], r["raw_hex"] or "") for r in rows) == [
        ("a\ufffd", ""),
        ("a\ufffd", "00610000"),
    ]


async def test_nul_in_a_part_of_a_long_message(receiver: Receiver, engine: AsyncEngine) -> None:
    sender = sender_()

    def part(seq: int, text: str) -> InboundPart:
        return InboundPart(
            route="modem:m1",
            sender=sender,
            text=text,
            encoding="ucs2",
            concat=Concat(ref=9, total=2, seq=seq),
        )

    assert await receiver.store(part(2, "c\x00d")) == "part"
    assert await receiver.store(part(1, "ab")) == "assembled"
    [row] = await rows_of(engine, sender)
    assert row["text"] == "abc\ufffdd" and row["complete"]
    # The message's raw text is its parts' in order.
    assert row["raw_hex"] == "00610062" + "006300000064"
    [data] = await received_data(engine, sender)
    assert data["raw_hex"] == row["raw_hex"]


@pytest.mark.parametrize("length", [33, 300, 5000])
async def test_over_long_numbers_are_kept_in_full(
    receiver: Receiver, engine: AsyncEngine, length: int
) -> None:
    # Random digits: PostgreSQL compresses a repetitive index entry under its size limit.
    sender = sender_()
    sender += digits(length - len(sender))
    recipient = "+" + digits(length - 1)
    single = InboundPart(route="smpp:b1", sender=sender, recipient=recipient, text="long")
    assert await receiver.store(single) == "stored"
    for seq in (1, 2):
        part = InboundPart(
            route="smpp:b1",
            sender=sender,
            recipient=recipient,
            text=f"p{seq}",
            concat=Concat(ref=3, total=2, seq=seq),
        )
        await receiver.store(part)
    rows = await rows_of(engine, sender)
    assert sorted(r["text"] for r in rows) == ["long", "p1p2"]
    assert all(r["recipient"] == recipient for r in rows)
    assert [d["to"] for d in await received_data(engine, sender)] == [recipient] * 2


ABSURD = [
    pytest.param(1, 0, 1, 8, id="total-0"),
    pytest.param(1, 3, 5, 8, id="seq-over-total"),
    pytest.param(1, 255, 0, 8, id="total-255-seq-0"),
    pytest.param(1, 4, -1, 8, id="seq-negative"),
    pytest.param(1, 40000, 2, 16, id="total-over-an-octet"),
    pytest.param(300, 2, 1, 8, id="ref-over-8-bits"),
    pytest.param(70000, 2, 1, 16, id="ref-over-16-bits"),
    pytest.param(-5, 2, 1, 8, id="ref-negative"),
]


@pytest.mark.parametrize(("ref", "total", "seq", "bits"), ABSURD)
async def test_absurd_concatenation_is_a_single_part(
    receiver: Receiver, engine: AsyncEngine, ref: int, total: int, seq: int, bits: int
) -> None:
    sender = sender_()
    part = InboundPart(
        route="smpp:b1",
        sender=sender,
        text="whole",
        concat=Concat(ref=ref, total=total, seq=seq, ref_bits=bits),  # type: ignore[arg-type]
    )
    assert await receiver.store(part) == "stored"
    [row] = await rows_of(engine, sender)
    assert row["text"] == "whole" and row["complete"]
    assert row["parts_total"] == 1 and row["parts_received"] == 1


async def test_hostile_parts_through_the_service_reach_the_webhook(
    inbound_settings: Settings, amqp: AmqpConnection, engine: AsyncEngine
) -> None:
    """Published on the broker as a worker would: stored, logged and sent to the webhook."""
    await clear_webhooks(engine)
    nul, absurd = sender_(), sender_()
    long_sender = sender_() + "9" * 60
    parts = [
        InboundPart(route="smpp:b1", sender=nul, text="\x00zero\x00", encoding="ucs2"),
        InboundPart(route="smpp:b1", sender=long_sender, recipient="+" + "3" * 40, text="long"),
        InboundPart(
            route="smpp:b1",
            sender=absurd,
            text="alone",
            concat=Concat(ref=1, total=255, seq=0),
        ),
    ]
    async with http_receiver() as rec:
        await WebhookRepository(engine).create(url=rec.url, events=["message.received"])
        async with running(inbound_settings, amqp):
            for p in parts:
                await publish(amqp, amqp.topology.inbound_key(p.route), p)

            async def all_stored() -> bool:
                found = [await rows_of(engine, s) for s in (nul, long_sender, absurd)]
                return all(found)

            await wait_for(all_stored, timeout=15)

            def mine() -> dict[str, dict[str, Any]]:
                bodies = [json.loads(r["body"])["data"] for r in rec.received]
                return {d["from"]: d for d in bodies if d["from"] in (nul, long_sender, absurd)}

            async def delivered() -> dict[str, dict[str, Any]] | None:
                got = mine()
                return got if len(got) == 3 else None

            hooks = await wait_for(delivered, timeout=15)
    await clear_webhooks(engine)
    assert hooks[nul]["text"] == "\ufffdzero\ufffd"
    assert hooks[nul]["raw_hex"] == "0000007a00650072006f0000"
    assert hooks[long_sender]["to"] == "+" + "3" * 40 and "raw_hex" not in hooks[long_sender]
    assert hooks[absurd]["text"] == "alone" and hooks[absurd]["complete"]


async def test_an_emoji_cut_between_two_parts_is_whole_again(
    receiver: Receiver, engine: AsyncEngine
) -> None:
    """A sender that cut a surrogate pair between parts: each part comes with U+FFFD and its
    octets (as the SMPP worker publishes it); the assembled message has the emoji back."""
    sender = sender_()

    def part(seq: int, text: str, raw_hex: str) -> InboundPart:
        return InboundPart(
            route="smpp:b1",
            sender=sender,
            text=text,
            encoding="ucs2",
            concat=Concat(ref=4, total=2, seq=seq),
            raw_hex=raw_hex,
        )

    assert await receiver.store(part(1, "hi\ufffd", "00680069d83d")) == "part"
    assert await receiver.store(part(2, "\ufffd!", "de000021")) == "assembled"
    [row] = await rows_of(engine, sender)
    assert row["text"] == "hi\U0001f600!" and row["raw_hex"] is None
    [data] = await received_data(engine, sender)
    assert data["text"] == "hi\U0001f600!" and "raw_hex" not in data


async def test_a_lone_half_stays_replaced_once_assembled(
    receiver: Receiver, engine: AsyncEngine
) -> None:
    sender = sender_()

    def part(seq: int, text: str, raw_hex: str | None) -> InboundPart:
        return InboundPart(
            route="smpp:b1",
            sender=sender,
            text=text,
            encoding="ucs2",
            concat=Concat(ref=5, total=2, seq=seq),
            raw_hex=raw_hex,
        )

    assert await receiver.store(part(1, "hi\ufffd", "00680069d83d")) == "part"
    assert await receiver.store(part(2, "ok", None)) == "assembled"
    [row] = await rows_of(engine, sender)
    assert row["text"] == "hi\ufffdok" and row["raw_hex"] == "00680069d83d006f006b"


@pytest.mark.parametrize(
    ("encoding", "text", "raw_hex"),
    [("iso8859-5", "При\x00", "bfe0d800"), ("iso8859-8", "\u05e9\x00", "f900")],
)
async def test_every_encoding_name_a_worker_gives_fits(
    receiver: Receiver, engine: AsyncEngine, encoding: str, text: str, raw_hex: str
) -> None:
    """SMPP data_coding 6 and 7 (SMPP 3.4 §5.2.19) are named with nine characters."""
    sender = sender_()
    part = InboundPart(route="smpp:b1", sender=sender, text=text, encoding=encoding)
    assert await receiver.store(part) == "stored"
    [row] = await rows_of(engine, sender)
    assert row["encoding"] == encoding and row["raw_hex"] == raw_hex
