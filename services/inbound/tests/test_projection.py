"""The projection against the real PostgreSQL: matching, parking, duplicates, events."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound.expiry import Expirer
from smsgw_inbound.projection import APPLIED, DUPLICATE, PARKED, UNKNOWN, Projector
from smsgw_shared.messages import PartRef, StatusEvent, utcnow
from smsgw_shared.report_scope import ReportScopes
from smsgw_shared.store.repos.projection import RECIPIENT_MAX
from smsgw_shared.store.repos.webhooks import WebhookRepository
from smsgw_shared.store.schema import (
    message_events,
    message_parts,
    pending_reports,
    webhook_deliveries,
)

from .conftest import add_message, clear_webhooks, logged, message_row, status_of


@pytest.fixture
def projector(engine: AsyncEngine) -> Projector:
    return Projector(engine, 7 * 86400)


def uid() -> str:
    return uuid.uuid4().hex[:12]


def sent(
    mid: uuid.UUID, route: str, *pids: str, to: str | None = None, **kw: object
) -> StatusEvent:
    return StatusEvent(
        message_id=str(mid),
        state="sent",
        route=route,
        parts=[PartRef(index=i, provider_id=p) for i, p in enumerate(pids, 1)],
        provider_id=pids[0],
        recipient=to,
        **kw,  # type: ignore[arg-type]
    )


def report(
    route: str, pid: str, state: str = "delivered", to: str | None = None, **kw: object
) -> StatusEvent:
    return StatusEvent(
        message_id=None, state=state, route=route, provider_id=pid, recipient=to, **kw
    )  # type: ignore[arg-type]


async def history(engine: AsyncEngine, mid: uuid.UUID) -> list[tuple[str, int | None]]:
    async with engine.connect() as conn:
        res = await conn.execute(
            select(message_events.c.state, message_events.c.part)
            .where(message_events.c.message_id == mid)
            .order_by(message_events.c.id)
        )
        return [(r[0], r[1]) for r in res]


async def pending_count(engine: AsyncEngine, event_id: str) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(pending_reports)
                    .where(pending_reports.c.event_id == event_id)
                )
            ).scalar_one()
        )


async def test_smpp_sent_then_reports_per_part(engine: AsyncEngine, projector: Projector) -> None:
    mid = await add_message(engine, parts=2, route="smpp:*")
    a, b = uid(), uid()
    assert await projector.apply_batch([sent(mid, "smpp:b1", a, b)]) == [APPLIED]
    m = await message_row(engine, mid)
    assert m["status"] == "sent" and m["sent_at"] is not None
    assert [(p["idx"], p["route"], p["provider_id"]) for p in m["parts_detail"]] == [
        (1, "smpp:b1", a),
        (2, "smpp:b1", b),
    ]
    await projector.apply_batch([report("smpp:b1", a)])
    assert await status_of(engine, mid) == "sent"
    await projector.apply_batch([report("smpp:b1", b, "undelivered", error_code="0x0B")])
    m = await message_row(engine, mid)
    assert m["status"] == "partially_delivered"
    assert [p["status"] for p in m["parts_detail"]] == ["delivered", "undelivered"]
    assert ("partially_delivered", None) in await history(engine, mid)


async def test_report_before_sent_is_parked_then_applied(
    engine: AsyncEngine, projector: Projector
) -> None:
    mid = await add_message(engine)
    pid = uid()
    early = report("smpp:b1", pid)
    assert await projector.apply_batch([early]) == [PARKED]
    assert await pending_count(engine, early.event_id) == 1
    assert await projector.apply_batch([sent(mid, "smpp:b1", pid)]) == [APPLIED]
    assert await status_of(engine, mid) == "delivered"
    assert await pending_count(engine, early.event_id) == 0
    assert [s for s, _ in await history(engine, mid)] == ["queued", "sent", "delivered"]
    # The same report again (broker redelivery) is a duplicate.
    assert await projector.apply_batch([early]) == [DUPLICATE]


async def test_report_and_sent_in_one_batch_in_either_order(
    engine: AsyncEngine, projector: Projector
) -> None:
    m1, m2 = await add_message(engine), await add_message(engine)
    p1, p2 = uid(), uid()
    early = report("smpp:b2", p1)
    res = await projector.apply_batch(
        [
            early,
            sent(m1, "smpp:b2", p1),
            sent(m2, "smpp:b2", p2),
            report("smpp:b2", p2),
        ]
    )
    assert res == [PARKED, APPLIED, APPLIED, APPLIED]
    assert await status_of(engine, m1) == "delivered"
    assert await status_of(engine, m2) == "delivered"
    assert await pending_count(engine, early.event_id) == 0  # never left parked


async def test_many_reports_ahead_of_their_sent_in_one_batch(
    engine: AsyncEngine, projector: Projector
) -> None:
    """A fast SMSC's receipts often reach the worker's pack ahead of their `sent`: each is
    applied once its `sent` is, in the same batch; only one whose `sent` never came stays
    parked (one row)."""
    mids = [await add_message(engine) for _ in range(30)]
    pids = [uid() for _ in mids]
    reports = [report("smpp:b5", p) for p in pids]
    orphan = report("smpp:b5", uid())
    batch = [*reports, orphan, *(sent(m, "smpp:b5", p) for m, p in zip(mids, pids, strict=True))]
    res = await projector.apply_batch(batch)
    assert res == [PARKED] * 31 + [APPLIED] * 30
    assert [await status_of(engine, m) for m in mids] == ["delivered"] * 30
    assert [await pending_count(engine, r.event_id) for r in reports] == [0] * 30
    assert await pending_count(engine, orphan.event_id) == 1
    assert [s for s, _ in await history(engine, mids[0])] == ["queued", "sent", "delivered"]


async def test_binds_of_one_account_share_receipts(engine: AsyncEngine) -> None:
    """The SMSC may send a receipt on any bind of the account: b1 and b2 share one, b3 is
    another account's. In a later batch, parked first, and in one batch either way round."""
    scopes = ReportScopes([["smpp:b1", "smpp:b2"]])
    projector = Projector(engine, 7 * 86400, scopes)
    m1, m2, m3 = [await add_message(engine, route="smpp:*") for _ in range(3)]
    p1, p2, p3 = uid(), uid(), uid()
    # Sent on b1, its receipt on b2, in a later batch.
    assert await projector.apply_batch([sent(m1, "smpp:b1", p1)]) == [APPLIED]
    assert await projector.apply_batch([report("smpp:b2", p1)]) == [APPLIED]
    assert await status_of(engine, m1) == "delivered"
    # The receipt on b1 first (parked), its `sent` on b2 later.
    early = report("smpp:b1", p2)
    assert await projector.apply_batch([early]) == [PARKED]
    assert await projector.apply_batch([sent(m2, "smpp:b2", p2)]) == [APPLIED]
    assert await status_of(engine, m2) == "delivered"
    assert await pending_count(engine, early.event_id) == 0
    # One batch, receipt ahead of its `sent` on the other bind.
    res = await projector.apply_batch([report("smpp:b2", p3), sent(m3, "smpp:b1", p3)])
    assert res == [PARKED, APPLIED]
    assert await status_of(engine, m3) == "delivered"
    assert [s for s, _ in await history(engine, m3)] == ["queued", "sent", "delivered"]
    # Another account's bind: the same provider id there is not this message's receipt.
    m4, p4 = await add_message(engine, route="smpp:*"), uid()
    assert await projector.apply_batch([sent(m4, "smpp:b1", p4)]) == [APPLIED]
    stranger = report("smpp:b3", p4)
    assert await projector.apply_batch([stranger]) == [PARKED]
    assert await status_of(engine, m4) == "sent"


async def test_without_shared_accounts_a_receipt_on_another_bind_is_not_matched(
    engine: AsyncEngine, projector: Projector
) -> None:
    mid, pid = await add_message(engine, route="smpp:*"), uid()
    assert await projector.apply_batch([sent(mid, "smpp:b1", pid)]) == [APPLIED]
    assert await projector.apply_batch([report("smpp:b2", pid)]) == [PARKED]
    assert await status_of(engine, mid) == "sent"


async def test_a_report_naming_an_over_long_recipient_is_parked_not_failed(
    engine: AsyncEngine, projector: Projector
) -> None:
    """A peer's junk address (longer than any phone number) must not fail the batch the
    report is in: the report is parked with its body whole, the column left empty."""
    mid, pid = await add_message(engine, route="smpp:*"), uid()
    junk = report("modem:m1", uid(), to="+" + "9" * 60)
    res = await projector.apply_batch([junk, sent(mid, "smpp:b1", pid), report("smpp:b1", pid)])
    assert res == [PARKED, APPLIED, APPLIED]
    assert await status_of(engine, mid) == "delivered"
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(pending_reports.c.recipient, pending_reports.c.body).where(
                    pending_reports.c.event_id == junk.event_id
                )
            )
        ).one()
    assert row.recipient is None and row.body["recipient"] == "+" + "9" * 60
    for col in (pending_reports.c.recipient, message_parts.c.recipient):
        assert col.type.length == RECIPIENT_MAX  # type: ignore[attr-defined]


async def test_over_long_provider_ids_from_a_peer_fail_nothing(
    engine: AsyncEngine, projector: Projector
) -> None:
    """An SMSC may answer with any C-octet string: a `sent` whose id does not fit the
    column still marks the message sent (the part without an id); a report naming such an
    id can match nothing and is dropped, not parked; the batch around them is applied."""
    mid, long_mid = await add_message(engine, route="smpp:*"), await add_message(engine)
    pid, junk = uid(), "9" * 200
    res = await projector.apply_batch(
        [sent(long_mid, "smpp:b1", junk), report("smpp:b1", junk), sent(mid, "smpp:b1", pid)]
    )
    assert res == [APPLIED, UNKNOWN, APPLIED]
    assert await status_of(engine, long_mid) == "sent"
    assert await projector.apply_batch([report("smpp:b1", pid)]) == [APPLIED]
    assert await status_of(engine, mid) == "delivered"


async def test_a_receipt_prefers_the_part_sent_on_its_own_bind(engine: AsyncEngine) -> None:
    """Two binds of one account holding the same id (the SMSC repeated it across its
    nodes): the receipt goes to the part sent on the bind it came on."""
    projector = Projector(engine, 7 * 86400, ReportScopes([["smpp:b1", "smpp:b2"]]))
    m1, m2, pid = await add_message(engine), await add_message(engine), uid()
    assert await projector.apply_batch([sent(m1, "smpp:b1", pid)]) == [APPLIED]
    assert await projector.apply_batch([sent(m2, "smpp:b2", pid)]) == [APPLIED]
    assert await projector.apply_batch([report("smpp:b1", pid)]) == [APPLIED]
    assert (await status_of(engine, m1), await status_of(engine, m2)) == ("delivered", "sent")


async def test_modem_tp_mr_wraps(engine: AsyncEngine, projector: Projector) -> None:
    """TP-MR 7 is reused 256 sends later: a report for the new message arriving before its
    `sent` must not land on the old, already delivered one."""
    modem = f"modem:{uid()}"
    to = "+79210001234"
    old = await add_message(engine, route="modem:*", to=to)
    await projector.apply_batch(
        [sent(old, modem, "7", to=to, occurred_at=utcnow() - timedelta(hours=2))]
    )
    await projector.apply_batch([report(modem, "7", to="79210001234")])
    assert await status_of(engine, old) == "delivered"

    new = await add_message(engine, route="modem:*", to=to)
    early = report(modem, "7", "undelivered", to=to)
    assert await projector.apply_batch([early]) == [PARKED]
    assert await projector.apply_batch([sent(new, modem, "7", to=to)]) == [APPLIED]
    assert await status_of(engine, new) == "undelivered"
    assert await status_of(engine, old) == "delivered"
    assert ("undelivered", 1) not in await history(engine, old)


async def test_modem_report_matches_recipient_and_latest_part(
    engine: AsyncEngine, projector: Projector
) -> None:
    modem = f"modem:{uid()}"
    a = await add_message(engine, route=modem, to="+79210000001")
    b = await add_message(engine, route=modem, to="+79210000002")
    # Same TP-MR, different recipients (two messages in flight on one modem).
    await projector.apply_batch(
        [sent(a, modem, "9", to="+79210000001"), sent(b, modem, "9", to="+79210000002")]
    )
    await projector.apply_batch([report(modem, "9", to="+79210000002")])
    assert await status_of(engine, b) == "delivered"
    assert await status_of(engine, a) == "sent"
    # A report for a number that sent nothing under this TP-MR waits.
    assert await projector.apply_batch([report(modem, "9", to="+79990000000")]) == [PARKED]


async def test_duplicates_within_and_across_batches(
    engine: AsyncEngine, projector: Projector
) -> None:
    mid = await add_message(engine)
    ev = sent(mid, "smpp:b1", uid())
    assert await projector.apply_batch([ev, ev]) == [APPLIED, DUPLICATE]
    assert await projector.apply_batch([ev]) == [DUPLICATE]
    assert [s for s, _ in await history(engine, mid)] == ["queued", "sent"]
    assert len(await logged(engine, message_id=mid)) == 1


async def test_unknown_message(projector: Projector) -> None:
    assert await projector.apply_batch([sent(uuid.uuid4(), "smpp:b1", uid())]) == [UNKNOWN]


async def test_late_sending_after_delivered(engine: AsyncEngine, projector: Projector) -> None:
    mid = await add_message(engine, route="modem:*")
    pid = uid()
    await projector.apply_batch([sent(mid, "modem:m1", pid, to="+79160001234")])
    await projector.apply_batch([report("modem:m1", pid, to="+79160001234")])
    late = StatusEvent(message_id=str(mid), state="sending", route="modem:m1")
    assert await projector.apply_batch([late]) == [APPLIED]
    assert await status_of(engine, mid) == "delivered"
    assert [s for s, _ in await history(engine, mid)][-1] == "sending"  # recorded, no effect


async def test_canceled_then_sent(engine: AsyncEngine, projector: Projector) -> None:
    mid = await add_message(engine, status="canceled")
    await projector.apply_batch(
        [StatusEvent(message_id=str(mid), state="sending", route="modem:m1")]
    )
    assert await status_of(engine, mid) == "canceled"
    await projector.apply_batch([sent(mid, "modem:m1", "3")])
    assert await status_of(engine, mid) == "sent"


async def test_status_events_logged_and_webhooks_enqueued(
    engine: AsyncEngine, projector: Projector
) -> None:
    await clear_webhooks(engine)
    repo = WebhookRepository(engine)
    all_hook, _ = await repo.create(url="http://127.0.0.1:9/all", events=["message.status"])
    delivered_hook, _ = await repo.create(
        url="http://127.0.0.1:9/d", events=["message.status.delivered"]
    )
    await repo.create(url="http://127.0.0.1:9/modem", events=["message.status"], routes=["modem:*"])
    await repo.create(url="http://127.0.0.1:9/num", events=["*"], numbers=["+70000000000"])
    mid = await add_message(engine, reference="order-1", status_callback="http://127.0.0.1:9/cb")
    pid = uid()
    await projector.apply_batch([sent(mid, "smpp:b1", pid), report("smpp:b1", pid)])
    events = await logged(engine, message_id=mid)
    assert [e["payload"]["data"]["status"] for e in events] == ["sent", "delivered"]
    data = events[1]["payload"]["data"]
    assert data["reference"] == "order-1" and data["to"] == "+79160001234"
    assert data["route"] == "smpp:b1" and data["parts"][0]["provider_id"] == pid
    assert events[1]["payload"]["id"] == events[1]["event_id"].strip()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(webhook_deliveries))).all()
    by_url: dict[str, list[str]] = {}
    for r in rows:
        by_url.setdefault(r.url, []).append(json.loads(r.payload)["data"]["status"])
    assert sorted(by_url["http://127.0.0.1:9/all"]) == ["delivered", "sent"]
    assert by_url["http://127.0.0.1:9/d"] == ["delivered"]
    assert sorted(by_url["http://127.0.0.1:9/cb"]) == ["delivered", "sent"]
    assert "http://127.0.0.1:9/modem" not in by_url and "http://127.0.0.1:9/num" not in by_url
    assert all_hook["id"] != delivered_hook["id"]
    await clear_webhooks(engine)


async def test_expiry(engine: AsyncEngine, projector: Projector) -> None:
    past = utcnow() - timedelta(seconds=5)
    queued = await add_message(engine, expires_at=past)
    waiting = await add_message(engine, expires_at=past)
    no_dlr = await add_message(engine, expires_at=past, dlr=False)
    future = await add_message(engine, expires_at=utcnow() + timedelta(hours=1))
    await projector.apply_batch([sent(waiting, "smpp:b1", uid()), sent(no_dlr, "smpp:b1", uid())])
    assert await Expirer(engine, grace=3600).sweep() >= 1
    assert await status_of(engine, queued) == "expired"
    assert await status_of(engine, waiting) == "sent"  # still within the grace for its report
    await Expirer(engine, grace=0).sweep()
    assert await status_of(engine, waiting) == "expired"
    assert await status_of(engine, no_dlr) == "sent"  # no report will ever come: stays sent
    assert await status_of(engine, future) == "queued"
    ev = await logged(engine, message_id=queued)
    assert ev[-1]["payload"]["data"]["status"] == "expired"
