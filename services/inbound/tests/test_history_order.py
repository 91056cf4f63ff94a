"""History as it happened: a receipt's `done date` has minute resolution, so a part submitted
at 12:34:29 can be reported delivered at 12:34:00. The delivery is recorded no earlier than
the submission (history order, `done_at`), and the reported time is kept with it (the
history line's `reported_at`, the status event's `reported_at`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound.events import iso
from smsgw_inbound.projection import APPLIED, PARKED, Projector
from smsgw_inbound.state_machine import Message, Report, apply, happened_at
from smsgw_shared.messages import PartRef, StatusEvent, utcnow

from .conftest import add_message, logged, message_row

SENT = datetime(2026, 3, 1, 12, 34, 29, 512000, tzinfo=UTC)
DONE = datetime(2026, 3, 1, 12, 34, tzinfo=UTC)  # the receipt's done date: 2603011234


# -- the state machine (pure) ---------------------------------------------------------------
def test_a_receipt_before_its_submission_happened_after_it() -> None:
    m = Message(status="queued", parts_count=1)
    apply(m, Report("sent", SENT, "smpp:b1", parts=((1, "a"),)))
    report = Report("delivered", DONE, "smpp:b1", part=1)
    assert happened_at(m, report) == SENT
    out = apply(m, report)
    assert out.occurred_at == SENT
    assert (m.status, m.sent_at, m.done_at) == ("delivered", SENT, SENT)


def test_a_receipt_after_its_submission_keeps_its_time() -> None:
    m = Message(status="queued", parts_count=1)
    apply(m, Report("sent", SENT, "smpp:b1", parts=((1, "a"),)))
    later = SENT + timedelta(minutes=3)
    assert apply(m, Report("delivered", later, "smpp:b1", part=1)).occurred_at == later
    assert (m.sent_at, m.done_at) == (SENT, later)


def test_each_part_is_timed_from_its_own_submission() -> None:
    m = Message(status="queued", parts_count=2)
    apply(m, Report("sent", SENT, "smpp:b1", parts=((1, "a"),)))
    resubmitted = SENT + timedelta(seconds=50)  # part 2 went out on a retry
    apply(m, Report("sent", resubmitted, "smpp:b1", parts=((2, "b"),)))
    assert apply(m, Report("delivered", DONE, "smpp:b1", part=1)).occurred_at == SENT
    last = apply(m, Report("delivered", DONE + timedelta(minutes=1), "smpp:b1", part=2))
    assert last.occurred_at == resubmitted
    assert (m.status, m.done_at) == ("delivered", resubmitted)


def test_a_sent_after_the_final_report_moves_done_at_up() -> None:
    """A whole-message report applied before its `sent` (out of order): the late `sent`
    fills in sent_at, and done_at is not left before it."""
    m = Message(status="queued", parts_count=1)
    apply(m, Report("delivered", DONE, "modem:m1"))
    assert m.done_at == DONE
    apply(m, Report("sent", SENT, "modem:m1", parts=((1, "7"),)))
    assert m.status == "delivered"
    assert m.sent_at is not None and m.done_at is not None and m.done_at >= m.sent_at


def test_submission_reports_keep_their_time() -> None:
    m = Message(status="queued", parts_count=1)
    apply(m, Report("sent", SENT, "smpp:b1", parts=((1, "a"),)))
    again = Report("sent", DONE, "smpp:b1", parts=((1, "a"),))
    assert happened_at(m, again) == DONE


# -- the projection and the history read (PostgreSQL) ---------------------------------------
def _times() -> tuple[datetime, datetime]:
    """A submission at hh:mm:29.5 a minute from now, and its receipt's done date hh:mm:00
    (both after the message's `queued` line, written with the database's clock)."""
    sent_at = (utcnow() + timedelta(minutes=1)).replace(second=29, microsecond=500000)
    return sent_at, sent_at.replace(second=0, microsecond=0)


def _sent(mid: uuid.UUID, pid: str, at: datetime) -> StatusEvent:
    return StatusEvent(
        message_id=str(mid),
        state="sent",
        route="smpp:b1",
        parts=[PartRef(index=1, provider_id=pid)],
        provider_id=pid,
        occurred_at=at,
    )


def _receipt(pid: str, done: datetime, state: str = "delivered", **kw: object) -> StatusEvent:
    return StatusEvent(
        message_id=None, state=state, route="smpp:b1", provider_id=pid, occurred_at=done, **kw
    )  # type: ignore[arg-type]


async def _check(engine: AsyncEngine, mid: uuid.UUID, sent_at: datetime, done: datetime) -> None:
    m = await message_row(engine, mid)
    assert m["status"] == "delivered"
    assert m["sent_at"] == sent_at and m["done_at"] == sent_at  # not the receipt's 12:34:00
    history = m["history"]
    assert [h["state"] for h in history] == ["queued", "sent", "delivered"]
    times = [h["occurred_at"] for h in history]
    assert times == sorted(times)
    assert history[2]["occurred_at"] == sent_at
    assert history[2]["detail"] == f"reported at {iso(done)}"
    # Each line keeps the time its report gave: none for the API's `queued`, the receipt's
    # done date for `delivered` (though it is placed at the submission).
    assert [h["reported_at"] for h in history] == [None, sent_at, done]
    assert m["done_at"] >= m["sent_at"]
    events = await logged(engine, message_id=mid)
    data = [e["payload"]["data"] for e in events]
    assert [d["status"] for d in data] == ["sent", "delivered"]
    assert data[1]["occurred_at"] == iso(sent_at) and data[1]["reported_at"] == iso(done)


async def test_receipt_with_a_done_date_before_the_sent_time(engine: AsyncEngine) -> None:
    projector = Projector(engine, 7 * 86400)
    sent_at, done = _times()
    mid = await add_message(engine)
    pid = uuid.uuid4().hex[:12]
    assert await projector.apply_batch([_sent(mid, pid, sent_at)]) == [APPLIED]
    assert await projector.apply_batch([_receipt(pid, done)]) == [APPLIED]
    await _check(engine, mid, sent_at, done)


async def test_receipt_parked_before_its_sent(engine: AsyncEngine) -> None:
    projector = Projector(engine, 7 * 86400)
    sent_at, done = _times()
    mid = await add_message(engine)
    pid = uuid.uuid4().hex[:12]
    assert await projector.apply_batch([_receipt(pid, done)]) == [PARKED]
    assert await projector.apply_batch([_sent(mid, pid, sent_at)]) == [APPLIED]
    await _check(engine, mid, sent_at, done)


async def test_undelivered_receipt_keeps_its_error_and_reported_time(engine: AsyncEngine) -> None:
    projector = Projector(engine, 7 * 86400)
    sent_at, done = _times()
    mid = await add_message(engine)
    pid = uuid.uuid4().hex[:12]
    await projector.apply_batch(
        [_sent(mid, pid, sent_at), _receipt(pid, done, "undelivered", error="stat UNDELIV")]
    )
    m = await message_row(engine, mid)
    assert (m["status"], m["done_at"]) == ("undelivered", sent_at)
    assert m["history"][-1]["detail"] == f"stat UNDELIV (reported at {iso(done)})"
    assert m["history"][-1]["reported_at"] == done


async def test_history_read_in_the_order_things_happened(engine: AsyncEngine) -> None:
    """Lines recorded out of order (a `sending` that arrived after its `sent`) are read in
    the order their times say."""
    projector = Projector(engine, 7 * 86400)
    sent_at, _ = _times()
    mid = await add_message(engine)
    pid = uuid.uuid4().hex[:12]
    sending = StatusEvent(
        message_id=str(mid),
        state="sending",
        route="smpp:b1",
        occurred_at=sent_at - timedelta(seconds=1),
    )
    await projector.apply_batch([_sent(mid, pid, sent_at)])
    await projector.apply_batch([sending])
    m = await message_row(engine, mid)
    assert [h["state"] for h in m["history"]] == ["queued", "sending", "sent"]


async def test_a_derived_line_has_no_reported_time(engine: AsyncEngine) -> None:
    """`partially_delivered` is the projection's conclusion, not a report: no reported_at."""
    projector = Projector(engine, 7 * 86400)
    sent_at, done = _times()
    mid = await add_message(engine, parts=2)
    a, b = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    sent = StatusEvent(
        message_id=str(mid),
        state="sent",
        route="smpp:b1",
        parts=[PartRef(index=1, provider_id=a), PartRef(index=2, provider_id=b)],
        occurred_at=sent_at,
    )
    later = done + timedelta(minutes=2)
    await projector.apply_batch([sent, _receipt(a, later), _receipt(b, later, "undelivered")])
    m = await message_row(engine, mid)
    assert m["status"] == "partially_delivered"
    lines = [(h["state"], h["source"], h["reported_at"]) for h in m["history"]]
    assert lines == [
        ("queued", "api", None),
        ("sent", "smpp:b1", sent_at),
        ("delivered", "smpp:b1", later),
        ("undelivered", "smpp:b1", later),
        ("partially_delivered", "projection", None),
    ]
