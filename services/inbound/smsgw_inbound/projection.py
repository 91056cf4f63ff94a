"""Status events → messages, parts, history, event log and webhook deliveries.

One batch of events per transaction. Order of work (every writer takes locks in this order,
so concurrent batches cannot deadlock): advisory locks on the (route, provider id) keys the
batch touches, then the message rows in id order. Delivery reports carry no message id: they
are matched on (route, provider id) — and the recipient on modem routes, where the TP-MR
wraps at 256 — and parked in `pending_reports` when their `sent` is not known yet. Binds
of one SMSC account count as one route for this (`smsgw_shared.report_scope`): the SMSC may
send a receipt on any of them.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound import metrics
from smsgw_inbound.events import MESSAGE_STATUS, LogEvent, iso, record_events, stable_id
from smsgw_inbound.numbers import same_number
from smsgw_inbound.state_machine import Message, Part, Report, apply
from smsgw_shared.messages import StatusEvent, utcnow
from smsgw_shared.messages.states import PART_FINAL
from smsgw_shared.report_scope import ReportScopes
from smsgw_shared.store.repos.projection import (
    PROVIDER_ID_MAX,
    Key,
    PendingReport,
    ProjectionRepository,
    ProjectionWrite,
)

log = logging.getLogger(__name__)

# A report's time comes from the SMSC's clock; allow this much skew against ours.
CLOCK_SKEW = timedelta(minutes=15)

APPLIED, DUPLICATE, PARKED, UNKNOWN = "applied", "duplicate", "parked", "unknown_message"


def _modem(route: str) -> bool:
    return route.startswith("modem:")


@dataclass
class Work:
    """One batch's working state."""

    now: datetime
    msgs: dict[uuid.UUID, dict[str, Any]]
    state: dict[uuid.UUID, Message]
    by_key: dict[Key, list[tuple[uuid.UUID, int]]]
    pending: dict[Key, list[PendingReport | StatusEvent]]
    out: ProjectionWrite = field(default_factory=ProjectionWrite)
    events: list[LogEvent] = field(default_factory=list)
    changed_msgs: set[uuid.UUID] = field(default_factory=set)
    changed_parts: set[tuple[uuid.UUID, int]] = field(default_factory=set)
    parked: dict[str, StatusEvent] = field(default_factory=dict)  # reports parked this batch


def to_report(ev: StatusEvent, part: int | None) -> Report:
    """The state machine's view of an event."""
    return Report(
        state=ev.state,
        occurred_at=ev.occurred_at,
        route=ev.route,
        part=part if part is not None else ev.part,
        parts=tuple((p.index, p.provider_id) for p in ev.parts),
        recipient=ev.recipient,
        error_code=ev.error_code,
        error=ev.error,
    )


def build_message(row: dict[str, Any], parts: list[dict[str, Any]]) -> Message:
    """The state machine's working copy of a stored message."""
    msg = Message(
        status=row["status"],
        parts_count=row["parts_count"],
        error_code=row["error_code"],
        error=row["error"],
        sent_at=row["sent_at"],
        done_at=row["done_at"],
    )
    for p in parts:
        msg.parts[p["idx"]] = Part(
            index=p["idx"],
            status=p["status"],
            provider_id=p["provider_id"],
            route=p["route"],
            recipient=p["recipient"],
            error_code=p["error_code"],
            submitted_at=p["submitted_at"],
        )
    msg.went_out = any(p["status"] not in (None, "sending", "failed", "rejected") for p in parts)
    return msg


class Projector:
    """Applies status events to the store."""

    def __init__(
        self, engine: AsyncEngine, match_window: float, scopes: ReportScopes | None = None
    ) -> None:
        self.engine = engine
        self.repo = ProjectionRepository(engine)
        self.match_window = timedelta(seconds=match_window)
        # Binds of one SMSC account are matched as one: keys in memory are scoped, and the
        # store is asked for every route a scoped key stands for.
        self.scopes = scopes or ReportScopes()

    async def apply_batch(self, events: Sequence[StatusEvent]) -> list[str]:
        """Apply events in order; returns one result per event (applied, duplicate, parked,
        unknown_message). Everything is committed when this returns."""
        results: dict[str, str] = {}
        unique: list[StatusEvent] = []
        for ev in events:
            if ev.event_id not in results:
                results[ev.event_id] = DUPLICATE
                unique.append(ev)
        now = utcnow()
        since = now - self.match_window
        key = self.scopes.key
        report_keys = {
            key(e.route, e.provider_id) for e in unique if not e.message_id and e.provider_id
        }
        part_keys = {
            key(e.route, p.provider_id)
            for e in unique
            if e.message_id
            for p in e.parts
            if p.provider_id
        }
        expand = self.scopes.expand
        async with self.engine.begin() as conn:
            async with self.repo.index_plans(conn):  # the lookups
                await self.repo.lock_keys(conn, report_keys | part_keys)
                ids = {uuid.UUID(e.message_id) for e in unique if e.message_id}
                ids |= await self.repo.message_ids_for_keys(conn, expand(report_keys), since)
                msgs = await self.repo.lock_messages(conn, ids)
                seen = await self.repo.seen(conn, [e.event_id for e in unique], msgs)
                parts = await self.repo.load_parts(conn, msgs)
                pending = await self.repo.pending_for(conn, expand(part_keys), since)
            work = self._work(now, msgs, parts, pending, key)
            for ev in unique:
                if ev.event_id in seen:
                    continue
                results[ev.event_id] = self._one(work, ev)
            flush_state(work)
            await self.repo.write(conn, work.out)
            await record_events(conn, work.events)
        if log.isEnabledFor(logging.DEBUG):  # per message: DEBUG
            for h in work.out.history:
                log.debug(
                    "projected %s",
                    h["state"],
                    extra={
                        "message_id": str(h["message_id"]),
                        "part": h["part"],
                        "source": h["source"],
                    },
                )
        for ev in unique:
            res = results[ev.event_id]
            metrics.EVENTS_APPLIED.labels(ev.state, res).inc()
            if res == PARKED:
                metrics.UNMATCHED_REPORTS.inc()
            metrics.PROJECTION_LAG.observe(max(0.0, (now - ev.occurred_at).total_seconds()))
        first: set[str] = set()
        out = []
        for ev in events:
            out.append(DUPLICATE if ev.event_id in first else results[ev.event_id])
            first.add(ev.event_id)
        return out

    @staticmethod
    def _work(
        now: datetime,
        msgs: dict[uuid.UUID, dict[str, Any]],
        parts: list[dict[str, Any]],
        pending: list[PendingReport],
        key: Callable[[str, str], Key],
    ) -> Work:
        by_msg: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        by_key: dict[Key, list[tuple[uuid.UUID, int]]] = defaultdict(list)
        for p in parts:
            by_msg[p["message_id"]].append(p)
            if p["provider_id"]:
                by_key[key(p["route"], p["provider_id"])].append((p["message_id"], p["idx"]))
        parked: dict[Key, list[PendingReport | StatusEvent]] = defaultdict(list)
        for r in pending:
            parked[key(r.route, r.provider_id)].append(r)
        state = {mid: build_message(row, by_msg[mid]) for mid, row in msgs.items()}
        return Work(now, msgs, state, by_key, parked)

    def _one(self, w: Work, ev: StatusEvent) -> str:
        if ev.message_id is None:
            if ev.provider_id and len(ev.provider_id) > PROVIDER_ID_MAX:
                # No stored part carries such an id (it would not fit): a peer's junk.
                log.warning(
                    "report with an over-long provider id dropped", extra={"route": ev.route}
                )
                return UNKNOWN
            target = self._match(w, ev)
            if target is None:
                if not ev.provider_id:
                    log.warning("report without provider id dropped", extra={"route": ev.route})
                    return UNKNOWN
                w.pending[self.scopes.key(ev.route, ev.provider_id)].append(ev)
                # Its row is made at the end, if it is still parked then: a receipt often
                # comes in the same batch as its `sent`, a little ahead of it.
                w.parked[ev.event_id] = ev
                return PARKED
            self._apply(w, target[0], ev, target[1])
            return APPLIED
        mid = uuid.UUID(ev.message_id)
        if mid not in w.state:
            log.warning("status for an unknown message", extra={"message_id": ev.message_id})
            return UNKNOWN
        self._apply(w, mid, ev, None)
        msg = w.state[mid]
        for ref in ev.parts:
            if not ref.provider_id:
                continue
            key = self.scopes.key(ev.route, ref.provider_id)
            if (mid, ref.index) not in w.by_key[key]:
                w.by_key[key].append((mid, ref.index))
            self._unpark(w, key, mid, ref.index, ev, msg)
        return APPLIED

    def _unpark(
        self, w: Work, key: Key, mid: uuid.UUID, idx: int, sent: StatusEvent, msg: Message
    ) -> None:
        """Apply parked reports that belong to a part just reported submitted."""
        waiting = w.pending.get(key)
        if not waiting:
            return
        part = msg.parts.get(idx)
        keep: list[PendingReport | StatusEvent] = []
        for item in waiting:
            if isinstance(item, PendingReport):
                report = StatusEvent.model_validate(item.body)
                received = item.received_at
            else:
                report, received = item, w.now
            fits = received >= sent.occurred_at - CLOCK_SKEW
            if _modem(key[0]) and part is not None:
                fits = fits and same_number(report.recipient, part.recipient or sent.recipient)
            if not fits:
                keep.append(item)
                continue
            if isinstance(item, PendingReport):
                w.out.matched_pending.append(item.id)
            else:
                del w.parked[report.event_id]
            self._apply(w, mid, report, idx)
        w.pending[key] = keep

    def _match(self, w: Work, ev: StatusEvent) -> tuple[uuid.UUID, int] | None:
        """The part a delivery report belongs to: the most recent submitted under its key
        (and recipient on modems) before the report's time."""
        assert ev.provider_id is not None
        cands = []
        for mid, idx in w.by_key.get(self.scopes.key(ev.route, ev.provider_id), []):
            part = w.state[mid].parts.get(idx)
            if part is None:
                continue
            if _modem(ev.route) and not same_number(ev.recipient, part.recipient):
                continue
            cands.append((part.submitted_at or w.now, mid, part))
        if not cands:
            return None
        # Binds of one account share a scope: a part sent on the bind the report came on
        # comes first (an id the SMSC repeated across its nodes names that bind's part).
        own = [c for c in cands if c[2].route == ev.route]
        cands = own or cands
        cands.sort(key=lambda c: c[0], reverse=True)
        before = [c for c in cands if c[0] <= ev.occurred_at + CLOCK_SKEW]
        _, mid, part = (before or cands)[0]
        # A modem's TP-MR comes round again after 256 sends: a report for a part that already
        # has its final state is more likely for a newer message whose `sent` is not here yet.
        if (
            _modem(ev.route)
            and part.status in PART_FINAL
            and not (ev.state == "delivered" and part.status != "delivered")
        ):
            return None
        return mid, part.index

    def _apply(self, w: Work, mid: uuid.UUID, ev: StatusEvent, part: int | None) -> None:
        msg = w.state[mid]
        before = (msg.status, msg.error_code, msg.error, msg.sent_at, msg.done_at)
        outcome = apply(msg, to_report(ev, part))
        at = outcome.occurred_at or ev.occurred_at
        if before != (msg.status, msg.error_code, msg.error, msg.sent_at, msg.done_at):
            w.changed_msgs.add(mid)
        w.out.history.append(
            {
                "message_id": mid,
                "state": ev.state,
                "part": part if part is not None else ev.part,
                "source": ev.route,
                "source_event_id": ev.event_id,
                "error_code": ev.error_code,
                "detail": history_detail(ev.error, ev.occurred_at, at),
                "occurred_at": at,
                "reported_at": ev.occurred_at,
            }
        )
        for idx in outcome.changed_parts:
            w.changed_parts.add((mid, idx))
        if not outcome.status_changed:
            return
        if outcome.new_status != ev.state:
            # The derived state (e.g. partially_delivered) gets its own history line.
            w.out.history.append(
                {
                    "message_id": mid,
                    "state": outcome.new_status,
                    "part": None,
                    "source": "projection",
                    "source_event_id": None,
                    "error_code": msg.error_code,
                    "detail": None,
                    "occurred_at": at,
                    "reported_at": None,
                }
            )
        w.events.append(
            status_event(w.msgs[mid], msg, outcome.new_status, ev, part, w.now, occurred_at=at)
        )


def history_detail(error: str | None, reported: datetime, at: datetime) -> str | None:
    """A history line's detail: the report's error, and the time the report gave when the
    line is recorded later (a receipt's minute-resolution `done date` before the part's
    submission: the line keeps the order things happened in, the reported time is here)."""
    if reported == at:
        return error
    note = f"reported at {iso(reported)}"
    return note if not error else f"{error} ({note})"


def flush_state(w: Work) -> None:
    """Turn the changed messages and parts, and the reports still parked, into rows to
    write."""
    w.out.new_pending.extend(
        {
            "route": ev.route,
            "provider_id": ev.provider_id,
            "recipient": ev.recipient,
            "event_id": ev.event_id,
            "body": ev.model_dump_json(),  # JSON text, as the store takes it
        }
        for ev in w.parked.values()
    )
    for mid in sorted(w.changed_msgs):
        msg = w.state[mid]
        w.out.messages.append(
            {
                "b_id": mid,
                "b_status": msg.status,
                "b_error_code": msg.error_code,
                "b_error": msg.error,
                "b_sent_at": msg.sent_at,
                "b_done_at": msg.done_at,
            }
        )
    for mid, idx in sorted(w.changed_parts):
        p = w.state[mid].parts[idx]
        w.out.parts.append(
            {
                "message_id": mid,
                "idx": idx,
                "route": p.route or w.msgs[mid]["route"],
                "provider_id": p.provider_id,
                "recipient": p.recipient,
                "status": p.status or "queued",
                "error_code": p.error_code,
                "submitted_at": p.submitted_at,
            }
        )


def parts_view(msg: Message) -> list[dict[str, Any]]:
    """The parts as they appear in event payloads."""
    return [
        {
            "index": p.index,
            "status": p.status,
            "provider_id": p.provider_id,
            "route": p.route,
            "error_code": p.error_code,
        }
        for p in sorted(msg.parts.values(), key=lambda x: x.index)
    ]


def status_event(
    row: dict[str, Any],
    msg: Message,
    status: str,
    ev: StatusEvent | None,
    part: int | None,
    now: datetime,
    occurred_at: datetime | None = None,
) -> LogEvent:
    """The `message.status` event of a change of a message's state. `occurred_at`: when it
    happened (`state_machine.happened_at`), which may be later than the time the report
    gave (`reported_at`)."""
    source = ev.event_id if ev is not None else "expiry"
    route = (
        ev.route
        if ev is not None
        else next((p.route for p in msg.parts.values() if p.route), row["route"])
    )
    reported = ev.occurred_at if ev is not None else now
    occurred = occurred_at or reported
    return LogEvent(
        event_id=stable_id(MESSAGE_STATUS, row["id"], status, source),
        type=MESSAGE_STATUS,
        data={
            "message_id": str(row["id"]),
            "status": status,
            "part": part if part is not None else (ev.part if ev is not None else None),
            "parts": parts_view(msg),
            "error_code": msg.error_code,
            "error": msg.error,
            "route": route,
            "reference": row["reference"],
            "to": row["to_number"],
            "occurred_at": iso(occurred),
            "reported_at": iso(reported),
        },
        created_at=now,
        route=route,
        message_id=row["id"],
        api_key_id=row["api_key_id"],
        callback_url=row["status_callback"],
    )
