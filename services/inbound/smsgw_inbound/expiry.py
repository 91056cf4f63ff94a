"""Validity expiry: messages past `expires_at` that never reached a final state.

Queued and sending messages expire at `expires_at`; sent messages that asked for a delivery
report get `inbound.expiry_grace` more (the SMSC's own expiry report may still be on its way).
A real delivery report arriving later still wins (`delivered` beats our `expired`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound import metrics
from smsgw_inbound.events import record_events
from smsgw_inbound.projection import Work, build_message, flush_state, status_event
from smsgw_inbound.state_machine import Report, apply
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.projection import ProjectionRepository

EXPIRY_SOURCE = "expiry"


class Expirer:
    """Marks overdue messages `expired`, a bounded batch per call."""

    def __init__(self, engine: AsyncEngine, grace: float) -> None:
        self.engine = engine
        self.repo = ProjectionRepository(engine)
        self.grace = timedelta(seconds=grace)

    async def sweep(self, limit: int = 500) -> int:
        """Expire up to `limit` messages; returns how many changed."""
        now = utcnow()
        async with self.engine.begin() as conn:
            ids = await self.repo.due_for_expiry(conn, now, now - self.grace, limit)
            if not ids:
                return 0
            msgs = await self.repo.lock_messages(conn, ids)
            by_msg: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for p in await self.repo.load_parts(conn, ids):
                by_msg[p["message_id"]].append(p)
            state = {mid: build_message(row, by_msg[mid]) for mid, row in msgs.items()}
            work = Work(now, msgs, state, {}, {})
            for mid, msg in state.items():
                outcome = apply(
                    msg, Report(state="expired", occurred_at=now, error_code="VALIDITY")
                )
                work.changed_msgs.add(mid)
                work.changed_parts |= {(mid, i) for i in outcome.changed_parts}
                work.out.history.append(
                    {
                        "message_id": mid,
                        "state": outcome.new_status,
                        "part": None,
                        "source": EXPIRY_SOURCE,
                        "source_event_id": f"{EXPIRY_SOURCE}:{mid}",
                        "error_code": "VALIDITY",
                        "detail": "validity period passed without a final report",
                        "occurred_at": now,
                    }
                )
                if outcome.status_changed:
                    work.events.append(
                        status_event(msgs[mid], msg, outcome.new_status, None, None, now)
                    )
            flush_state(work)
            await self.repo.write(conn, work.out)
            await record_events(conn, work.events)
        metrics.EXPIRED.inc(len(ids))
        return len(ids)
