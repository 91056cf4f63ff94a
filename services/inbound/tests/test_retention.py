"""Data that ages: rows older than their retention go, in bounded batches, with their
children; younger rows, scheduled sends and pending deliveries stay; metrics say what went."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound import metrics
from smsgw_inbound.retention import Retention
from smsgw_shared.config import RetentionConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.retention import RetentionRepository
from smsgw_shared.store.schema import (
    event_log,
    inbound_messages,
    inbound_parts,
    message_events,
    message_parts,
    messages,
    pending_reports,
    webhook_attempts,
    webhook_deliveries,
)


def _message(age_days: float, status: str = "delivered") -> dict[str, Any]:
    at = utcnow() - timedelta(days=age_days)
    return {
        "id": uuid.uuid4(),
        "batch_id": uuid.uuid4(),
        "to_number": "+79210000000",
        "text": "aged",
        "encoding": "gsm7",
        "parts_count": 1,
        "route": "smpp:b1",
        "status": status,
        "job_id": uuid.uuid4(),
        "created_at": at,
        "updated_at": at,
    }


async def _seed(engine: AsyncEngine, age_days: float, n: int) -> dict[str, list[Any]]:
    """`n` rows of every kind, `age_days` old; their ids by table."""
    at = utcnow() - timedelta(days=age_days)
    ids: dict[str, list[Any]] = {}
    msgs = [_message(age_days) for _ in range(n)]
    ids["messages"] = [m["id"] for m in msgs]
    deliveries = [
        {
            "id": uuid.uuid4(),
            "url": "http://127.0.0.1:9/x",
            "event_id": f"evt_ret_{uuid.uuid4().hex}",
            "event_type": "message.status",
            "payload": "{}",
            "status": "succeeded",
            "created_at": at,
        }
        for _ in range(n)
    ]
    ids["webhook_deliveries"] = [d["id"] for d in deliveries]
    inbound = [
        {
            "id": uuid.uuid4(),
            "route": "modem:m1",
            "sender": "+79000000000",
            "text": "old",
            "encoding": "gsm7",
            "created_at": at,
            "received_at": at,
        }
        for _ in range(n)
    ]
    ids["inbound_messages"] = [m["id"] for m in inbound]
    async with engine.begin() as conn:
        await conn.execute(insert(messages), msgs)
        await conn.execute(
            insert(message_parts),
            [
                {"message_id": m["id"], "idx": 0, "route": "smpp:b1", "status": "delivered"}
                for m in msgs
            ],
        )
        await conn.execute(
            insert(message_events),
            [
                {"message_id": m["id"], "state": "delivered", "source": "t", "occurred_at": at}
                for m in msgs
            ],
        )
        await conn.execute(insert(webhook_deliveries), deliveries)
        await conn.execute(
            insert(webhook_attempts),
            [
                {"delivery_id": d["id"], "status_code": 200, "duration_ms": 1, "attempted_at": at}
                for d in deliveries
            ],
        )
        res = await conn.execute(
            insert(event_log).returning(event_log.c.id),
            [
                {
                    "event_id": f"evt_ret_{uuid.uuid4().hex}",
                    "type": "message.status",
                    "payload": {},
                    "created_at": at,
                }
                for _ in range(n)
            ],
        )
        ids["event_log"] = [r[0] for r in res]
        await conn.execute(insert(inbound_messages), inbound)
        res = await conn.execute(
            insert(inbound_parts).returning(inbound_parts.c.id),
            [
                {
                    "route": "modem:m1",
                    "sender": "+79000000000",
                    "ref": i,
                    "ref_bits": 8,
                    "total": 2,
                    "seq": 1,
                    "text": "p",
                    "encoding": "gsm7",
                    "event_id": f"evt_ret_{uuid.uuid4().hex}",
                    "received_at": at,
                    "message_id": m["id"],
                }
                for i, m in enumerate(inbound)
            ],
        )
        ids["inbound_parts"] = [r[0] for r in res]
        res = await conn.execute(
            insert(pending_reports).returning(pending_reports.c.id),
            [
                {
                    "route": "smpp:b1",
                    "provider_id": uuid.uuid4().hex,
                    "event_id": f"evt_ret_{uuid.uuid4().hex}",
                    "body": {},
                    "received_at": at,
                }
                for _ in range(n)
            ],
        )
        ids["pending_reports"] = [r[0] for r in res]
    return ids


async def _left(engine: AsyncEngine, ids: dict[str, list[Any]]) -> dict[str, int]:
    tables = {
        "messages": messages,
        "webhook_deliveries": webhook_deliveries,
        "event_log": event_log,
        "inbound_messages": inbound_messages,
        "inbound_parts": inbound_parts,
        "pending_reports": pending_reports,
    }
    out = {}
    async with engine.connect() as conn:
        for name, t in tables.items():
            out[name] = (
                await conn.execute(select(func.count()).where(t.c.id.in_(ids[name])))
            ).scalar_one()
        out["message_parts"] = (
            await conn.execute(
                select(func.count()).where(message_parts.c.message_id.in_(ids["messages"]))
            )
        ).scalar_one()
        out["message_events"] = (
            await conn.execute(
                select(func.count()).where(message_events.c.message_id.in_(ids["messages"]))
            )
        ).scalar_one()
        out["webhook_attempts"] = (
            await conn.execute(
                select(func.count()).where(
                    webhook_attempts.c.delivery_id.in_(ids["webhook_deliveries"])
                )
            )
        ).scalar_one()
    return out


async def test_aged_rows_go_and_young_ones_stay(engine: AsyncEngine) -> None:
    old = await _seed(engine, 400, 7)
    young = await _seed(engine, 1, 3)
    scheduled = _message(400, status="scheduled")
    pending = {
        "id": uuid.uuid4(),
        "url": "http://127.0.0.1:9/x",
        "event_id": "evt_ret_pending",
        "event_type": "message.status",
        "payload": "{}",
        "status": "pending",
        "created_at": utcnow() - timedelta(days=400),
    }
    async with engine.begin() as conn:
        await conn.execute(insert(messages), [scheduled])
        await conn.execute(insert(webhook_deliveries), [pending])
    before = metrics.RETENTION_DELETED.labels("messages")._value.get()
    # Batches of 3: every table takes several statements.
    retention = Retention(RetentionRepository(engine), RetentionConfig(batch_size=3))
    gone = await retention.sweep()
    assert gone["messages"] >= 7 and gone["inbound"] >= 7 and gone["event_log"] >= 7
    assert set((await _left(engine, old)).values()) == {0}
    assert set((await _left(engine, young)).values()) == {3}
    async with engine.connect() as conn:
        assert (
            await conn.execute(select(func.count()).where(messages.c.id == scheduled["id"]))
        ).scalar_one() == 1
        assert (
            await conn.execute(select(func.count()).where(webhook_deliveries.c.id == pending["id"]))
        ).scalar_one() == 1
    assert metrics.RETENTION_DELETED.labels("messages")._value.get() - before >= 7
    assert metrics.TABLE_BYTES.labels("messages")._value.get() > 0
    # Zero keeps forever.
    more = await _seed(engine, 400, 2)
    keep = RetentionConfig(
        messages_days=0, event_log_days=0, webhook_deliveries_days=0, inbound_days=0
    )
    assert await Retention(RetentionRepository(engine), keep).sweep() == {}
    assert set((await _left(engine, more)).values()) == {2}
    await retention.sweep()
    assert set((await _left(engine, more)).values()) == {0}
