"""The message state machine (DESIGN.md "Message states"): pure, no I/O.

A message is `scheduled → queued → sending → sent → delivered | undelivered | expired`, or
`failed`, `rejected`, `canceled`, `partially_delivered`. Workers report per message (`sending`,
`sent`, `failed`) and per part (delivery reports); the message's state is derived from its
parts. Rules:

- Idempotent: the caller drops events it has applied before (by event id); applying the same
  report twice to a part changes nothing anyway.
- Order-tolerant: a final state never regresses; a late `sending`/`sent` after a final state
  only fills in provider ids and routes. Intermediate reports (`enroute`, `accepted`) keep `sent`.
- `delivered` wins over the other final states: a delivery report saying the handset has the
  message is better evidence than our own expiry or a worker's timeout.
- Canceled: a message the API canceled stays `canceled` on `sending`/`failed`/`rejected`
  (recorded in history), but a `sent` or a delivery report means the SMS went out anyway (the
  cancel lost the race with the worker): the worker's report wins, because the state must say
  what happened to the SMS, and history shows both.
- Time: a report says when its change happened by the clock of whoever made it; an SMSC's
  receipt has minute resolution (`done date`), so a delivery can claim 12:34:00 for a part
  submitted at 12:34:29. A change never happened before the submission it reports on: its
  time is the later of the two (`happened_at`), which orders the history as it happened and
  keeps `done_at` from preceding `sent_at`. The reported time stays with the event.
- Overall state once every part is final: all delivered → `delivered`; some delivered and the
  rest not → `partially_delivered`; none delivered → the common state if they agree, else the
  first of undelivered, expired, rejected, failed that occurs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from smsgw_shared.messages.states import MESSAGE_FINAL, MESSAGE_PROGRESS, PART_FINAL

PART_PROGRESS = {None: 0, "sending": 1, "sent": 2}
INTERMEDIATE = frozenset({"enroute", "accepted"})
# Which state wins when the parts' final states disagree and none was delivered.
MIXED_PRECEDENCE = ("undelivered", "expired", "rejected", "failed")
# Reports that prove the SMS left the gateway (they lift a cancel).
WENT_OUT = frozenset({"sent", "enroute", "accepted", "delivered", "undelivered", "expired"})
# Reports timed by the worker that sends: the submission itself, nothing to come after.
SUBMISSION = frozenset({"sending", "sent"})


@dataclass
class Part:
    """What is known about one part of a message."""

    index: int
    status: str | None = None  # None: nothing reported yet
    provider_id: str | None = None
    route: str | None = None
    recipient: str | None = None
    error_code: str | None = None
    submitted_at: datetime | None = None


@dataclass
class Message:
    """The projection's working copy of a message and its parts."""

    status: str
    parts_count: int
    parts: dict[int, Part] = field(default_factory=dict)
    error_code: str | None = None
    error: str | None = None
    sent_at: datetime | None = None
    done_at: datetime | None = None
    went_out: bool = False  # some part was reported sent (lifts a cancel)

    def part(self, index: int) -> Part:
        """The part with this 1-based index, created empty when first seen."""
        p = self.parts.get(index)
        if p is None:
            p = self.parts[index] = Part(index)
        return p

    def indexes(self) -> range:
        last = self.parts_count
        if self.parts:
            last = max(last, *self.parts)
        return range(1, last + 1)


@dataclass(frozen=True)
class Report:
    """A status event as the state machine sees it (the part already resolved)."""

    state: str
    occurred_at: datetime
    route: str | None = None
    part: int | None = None  # None: the whole message
    parts: tuple[tuple[int, str | None], ...] = ()  # (index, provider id) of submitted parts
    recipient: str | None = None
    error_code: str | None = None
    error: str | None = None


@dataclass
class Outcome:
    """What applying one report changed."""

    old_status: str
    new_status: str
    changed_parts: set[int] = field(default_factory=set)
    occurred_at: datetime | None = None  # when the change happened (`happened_at`)

    @property
    def status_changed(self) -> bool:
        return self.old_status != self.new_status


def next_part_state(current: str | None, reported: str) -> str | None:
    """The part's new state after `reported`, or None when it does not change."""
    new = "sent" if reported in INTERMEDIATE else reported
    if current == new:
        return None
    if current in PART_FINAL:
        return "delivered" if new == "delivered" else None
    if new in PART_FINAL:
        return new
    if PART_PROGRESS.get(new, 0) > PART_PROGRESS.get(current, 0):
        return new
    return None


def aggregate(msg: Message) -> str | None:
    """The state the parts imply, or None while no part has reported anything."""
    states = [msg.parts[i].status if i in msg.parts else None for i in msg.indexes()]
    if all(s is None for s in states):
        return None
    if all(s in PART_FINAL for s in states):
        if all(s == "delivered" for s in states):
            return "delivered"
        if "delivered" in states:
            return "partially_delivered"
        distinct = set(states)
        if len(distinct) == 1:
            return states[0]
        return next(s for s in MIXED_PRECEDENCE if s in distinct)
    return "sent" if any(s in PART_FINAL or s == "sent" for s in states) else "sending"


def _set_part(msg: Message, index: int, reported: str, rep: Report, out: Outcome) -> None:
    part = msg.part(index)
    new = next_part_state(part.status, reported)
    if new is not None:
        part.status = new
        if new in PART_FINAL and new != "delivered" and rep.error_code:
            part.error_code = rep.error_code
        if new == "delivered":
            part.error_code = None
        out.changed_parts.add(index)
    if rep.route and part.route != rep.route and rep.state in ("sending", "sent"):
        part.route = rep.route
        out.changed_parts.add(index)
    if reported in WENT_OUT:
        msg.went_out = True


def _submitted(msg: Message, rep: Report, out: Outcome) -> set[int]:
    """Record the submitted parts of a `sent`/`failed` report (provider ids, route)."""
    done = set()
    for index, provider_id in rep.parts:
        part = msg.part(index)
        newer = part.submitted_at is None or rep.occurred_at >= part.submitted_at
        if provider_id and (
            part.provider_id is None or (newer and part.provider_id != provider_id)
        ):
            # A retried job gets new ids; later reports arrive for the newest.
            part.provider_id = provider_id
            part.submitted_at = rep.occurred_at
            out.changed_parts.add(index)
        if part.submitted_at is None:
            part.submitted_at = rep.occurred_at
            out.changed_parts.add(index)
        if rep.recipient and part.recipient != rep.recipient:
            part.recipient = rep.recipient
            out.changed_parts.add(index)
        _set_part(msg, index, "sent", rep, out)
        done.add(index)
    return done


def happened_at(msg: Message, rep: Report) -> datetime:
    """When the change a report tells of happened: its reported time, but not before the
    submission it reports on (the message's `sent_at`, the part's own submission)."""
    at = rep.occurred_at
    if rep.state in SUBMISSION:
        return at
    floors = [msg.sent_at]
    if rep.part is not None and rep.part in msg.parts:
        floors.append(msg.parts[rep.part].submitted_at)
    return max([at, *(f for f in floors if f is not None)])


def apply(msg: Message, rep: Report) -> Outcome:
    """Apply one report to `msg` (in place) and say what changed; the outcome's
    `occurred_at` is when the change happened (`happened_at`)."""
    at = happened_at(msg, rep)
    if at != rep.occurred_at:
        rep = replace(rep, occurred_at=at)
    out = Outcome(msg.status, msg.status, occurred_at=at)
    state = rep.state
    if rep.part is not None:
        _set_part(msg, rep.part, state, rep, out)
    elif state == "sending":
        for index, _ in rep.parts:
            _set_part(msg, index, "sending", rep, out)
    elif state in ("sent", *INTERMEDIATE):
        submitted = _submitted(msg, rep, out)
        if not submitted:
            for index in msg.indexes():
                _set_part(msg, index, "sent", rep, out)
    else:
        # failed / rejected / delivered / undelivered / expired for the whole message: the
        # parts listed as submitted went out; every other part takes the reported state.
        submitted = _submitted(msg, rep, out) if state in ("failed", "rejected") else set()
        for index in msg.indexes():
            if index not in submitted:
                _set_part(msg, index, state, rep, out)
    msg.status = _overall(msg, state)
    if rep.part is None and state in ("failed", "rejected") and msg.status not in MESSAGE_FINAL:
        # The worker gave up on the message, though some parts went out (they may still be
        # delivered: the message then becomes partially_delivered).
        msg.status = state
    if msg.status == "delivered":
        msg.error_code = msg.error = None
    elif (
        msg.status != out.old_status
        and msg.status in MESSAGE_FINAL - {"canceled"}
        and (rep.error_code or rep.error)
    ):
        msg.error_code, msg.error = rep.error_code, rep.error
    if msg.sent_at is None and msg.went_out:
        msg.sent_at = rep.occurred_at
    if msg.status in MESSAGE_FINAL and out.old_status not in MESSAGE_FINAL:
        msg.done_at = rep.occurred_at
    if msg.done_at is not None and msg.sent_at is not None and msg.done_at < msg.sent_at:
        # A `sent` that came after the final report (the report's time is the SMSC's,
        # minute-truncated): it was done no earlier than it was sent.
        msg.done_at = msg.sent_at
    out.new_status = msg.status
    return out


def _overall(msg: Message, reported: str) -> str:
    current = msg.status
    derived = aggregate(msg)
    if current == "canceled":
        if not msg.went_out or derived is None:
            return current
        return derived
    if derived is None:
        if reported == "sending" and MESSAGE_PROGRESS.get(current, 9) < MESSAGE_PROGRESS["sending"]:
            return "sending"
        return current
    if current in MESSAGE_FINAL:
        # Final states only move to another final state the parts now imply (e.g. our own
        # expiry overtaken by a real delivery report, failed → partially_delivered).
        return derived if derived in MESSAGE_FINAL else current
    if derived in MESSAGE_FINAL:
        return derived
    if MESSAGE_PROGRESS[derived] > MESSAGE_PROGRESS.get(current, 0):
        return derived
    return current
