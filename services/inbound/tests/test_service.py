"""The inbound service as it runs: real RabbitMQ in, real PostgreSQL and HTTP out."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings
from smsgw_shared.messages import Concat, Heartbeat, InboundPart, PartRef, StatusEvent
from smsgw_shared.store.repos.webhooks import WebhookRepository
from smsgw_shared.store.schema import inbound_messages, route_state
from smsgw_shared.testing.helpers import wait_for

from .conftest import (
    add_message,
    clear_webhooks,
    http_receiver,
    logged,
    publish,
    running,
    status_of,
)


async def inbound_rows(engine: AsyncEngine, sender: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        res = await conn.execute(
            select(inbound_messages).where(inbound_messages.c.sender == sender)
        )
        return [dict(r._mapping) for r in res]


def part(
    sender: str, seq: int, total: int, ref: int, text: str, bits: int = 8, **kw: Any
) -> InboundPart:
    return InboundPart(
        route="modem:m1",
        sender=sender,
        recipient="+79001112233",
        text=text,
        concat=Concat(ref=ref, total=total, seq=seq, ref_bits=bits),  # type: ignore[arg-type]
        **kw,
    )


async def test_status_flow_with_signed_webhook(
    inbound_settings: Settings, amqp: AmqpConnection, engine: AsyncEngine
) -> None:
    await clear_webhooks(engine)
    async with http_receiver() as rec:
        hook, secret = await WebhookRepository(engine).create(
            url=rec.url, events=["message.status"]
        )
        mid = await add_message(engine, parts=2)
        pid1, pid2 = uuid.uuid4().hex, uuid.uuid4().hex
        topo = amqp.topology
        async with running(inbound_settings, amqp):
            # The report for part 2 overtakes the `sent` event.
            await publish(
                amqp,
                topo.status_key("delivered"),
                StatusEvent(state="delivered", route="smpp:b1", provider_id=pid2),
            )
            sent = StatusEvent(
                message_id=str(mid),
                state="sent",
                route="smpp:b1",
                parts=[PartRef(index=1, provider_id=pid1), PartRef(index=2, provider_id=pid2)],
            )
            await publish(amqp, topo.status_key("sent"), sent)
            await publish(amqp, topo.status_key("sent"), sent)  # a duplicate
            await publish(
                amqp,
                topo.status_key("delivered"),
                StatusEvent(state="delivered", route="smpp:b1", provider_id=pid1),
            )

            async def delivered() -> bool:
                return await status_of(engine, mid) == "delivered"

            await wait_for(delivered)
            await wait_for(lambda: _n(rec.received, 2))
        statuses = []
        for got in rec.received:
            payload = Webhook(secret).verify(got["body"], got["headers"])
            statuses.append(payload["data"]["status"])
        assert statuses == ["sent", "delivered"]
        assert [e["payload"]["data"]["status"] for e in await logged(engine, message_id=mid)] == [
            "sent",
            "delivered",
        ]
        assert hook["url"] == rec.url
    await clear_webhooks(engine)


async def test_reassembly_across_a_restart_and_duplicates(
    inbound_settings: Settings, amqp: AmqpConnection, engine: AsyncEngine
) -> None:
    sender = "+7999" + uuid.uuid4().hex[:7]
    key = amqp.topology.inbound_key("modem:m1")
    p2 = part(sender, 2, 3, 200, "world, ", bits=16)
    async with running(inbound_settings, amqp):
        await publish(amqp, key, part(sender, 1, 3, 200, "Hello, ", bits=16))
        await publish(amqp, key, p2)
        # An 8-bit reference with the same value is another message.
        await publish(amqp, key, part(sender, 1, 2, 200, "other ", bits=8))

        async def stored_parts() -> bool:
            from smsgw_shared.store.schema import inbound_parts

            async with engine.connect() as conn:
                res = await conn.execute(
                    select(inbound_parts.c.id).where(inbound_parts.c.sender == sender)
                )
                return len(res.all()) == 3

        await wait_for(stored_parts)
    assert await inbound_rows(engine, sender) == []
    async with running(inbound_settings, amqp):
        await publish(amqp, key, p2)  # broker redelivery of the same event
        await publish(amqp, key, part(sender, 2, 3, 200, "world, ", bits=16))  # read twice
        await publish(amqp, key, part(sender, 3, 3, 200, "again!", bits=16))
        await publish(amqp, key, InboundPart(route="modem:m1", sender=sender, text="single"))

        async def two() -> list[dict[str, Any]] | None:
            rows = await inbound_rows(engine, sender)
            return rows if len(rows) == 2 else None

        rows = await wait_for(two)
        # A late duplicate of an assembled part does not start a new message.
        await publish(amqp, key, part(sender, 3, 3, 200, "again!", bits=16))
        await publish(amqp, key, part(sender, 2, 2, 200, "message", bits=8))

        async def three() -> list[dict[str, Any]] | None:
            rows = await inbound_rows(engine, sender)
            return rows if len(rows) == 3 else None

        rows = await wait_for(three)
    texts = sorted(r["text"] for r in rows)
    assert texts == ["Hello, world, again!", "other message", "single"]
    assert all(r["complete"] for r in rows)
    assert len(await inbound_rows(engine, sender)) == 3
    events = await logged(engine, type="message.received")
    mine = [e for e in events if e["payload"]["data"].get("from") == sender]
    assert len(mine) == 3


async def test_incomplete_message_delivered_after_timeout(
    inbound_settings: Settings, amqp: AmqpConnection, engine: AsyncEngine
) -> None:
    data = inbound_settings.model_dump()
    data["inbound"]["reassembly_timeout"] = 0.5
    settings = Settings.model_validate(data)
    sender = "+7998" + uuid.uuid4().hex[:7]
    async with running(settings, amqp):
        await publish(amqp, amqp.topology.inbound_key("modem:m1"), part(sender, 1, 3, 7, "first "))
        await publish(amqp, amqp.topology.inbound_key("modem:m1"), part(sender, 3, 3, 7, "third"))

        async def one() -> list[dict[str, Any]] | None:
            rows = await inbound_rows(engine, sender)
            return rows if rows else None

        rows = await wait_for(one, timeout=10)
    assert rows[0]["complete"] is False and rows[0]["text"] == "first third"
    assert rows[0]["parts_total"] == 3 and rows[0]["parts_received"] == 2
    ev = [
        e
        for e in await logged(engine, type="message.received")
        if e["payload"]["data"].get("from") == sender
    ]
    assert ev[0]["payload"]["data"]["missing_parts"] == [2]


async def test_heartbeats_update_route_state_and_log_changes(
    inbound_settings: Settings, amqp: AmqpConnection, engine: AsyncEngine
) -> None:
    route = f"modem:hb{uuid.uuid4().hex[:6]}"
    key = amqp.topology.heartbeat_key(route)
    async with running(inbound_settings, amqp):
        for state, connected in (("connected", True), ("connected", True), ("disconnected", False)):
            await publish(
                amqp, key, Heartbeat(route=route, kind="modem", state=state, connected=connected)
            )

        async def two_events() -> list[dict[str, Any]] | None:
            ev = await logged(engine, type="route.state", route=route)
            return ev if len(ev) == 2 else None

        events = await wait_for(two_events)
    assert [e["payload"]["data"]["state"] for e in events] == ["connected", "disconnected"]
    assert events[1]["payload"]["data"]["previous"] == "connected"
    async with engine.connect() as conn:
        row = (await conn.execute(select(route_state).where(route_state.c.route == route))).one()
    assert row.state == "disconnected" and row.connected is False


async def test_expiry_task(
    inbound_settings: Settings, amqp: AmqpConnection, engine: AsyncEngine
) -> None:
    from datetime import timedelta

    from smsgw_shared.messages import utcnow

    mid = await add_message(engine, expires_at=utcnow() - timedelta(seconds=1))
    async with running(inbound_settings, amqp):

        async def expired() -> bool:
            return await status_of(engine, mid) == "expired"

        await wait_for(expired)


async def _n(items: list[Any], n: int) -> bool:
    return len(items) >= n
