"""Incoming SMS: single parts stored at once, long ones reassembled in the store.

Reassembly state lives in `inbound_parts`, so a restart loses nothing. A part is a duplicate
when its event was seen, its slot (route, sender, recipient, reference, total, sequence) is
already filled, or the same part (same slot and text) was assembled recently. Long messages
still incomplete after `inbound.reassembly_timeout` are delivered with `complete: false`.
8- and 16-bit UDH references and SAR (3GPP TS 23.040 §9.2.3.24.1/.8, SMPP 3.4 §5.3.2.22-24)
arrive already normalised as `Concat(ref, total, seq, ref_bits)`. Every part is first made
storable (`storable.py`): refused characters replaced, absurd concatenation info dropped.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_inbound import metrics
from smsgw_inbound.events import MESSAGE_RECEIVED, LogEvent, iso, record_events, stable_id
from smsgw_inbound.storable import clean, raw_octets, storable
from smsgw_inbound.store_retry import is_transient
from smsgw_shared.amqp import DeliveryInfo
from smsgw_shared.backoff import Backoff, pause
from smsgw_shared.messages import InboundPart, utcnow
from smsgw_shared.store.repos.inbound import InboundRepository, PartGroup

log = logging.getLogger(__name__)
STORE_RETRY_MAX_S = 5.0  # ceiling of the in-place retry back-off while the store is down

_NAMESPACE = uuid.UUID("0b8f4a52-3f5e-4a0c-8a7e-2f4d8f1b6c90")


def message_id_for(part: InboundPart) -> uuid.UUID:
    """A stable id for a single-part message: from its content when the SMSC timestamp is
    known (the same SMS read twice from a modem is one message), else from the event id.
    `part` is storable: a replaced text counts with its raw form."""
    if part.smsc_timestamp is not None:
        scts = part.smsc_timestamp.isoformat()
        key = f"{part.route}|{part.sender}|{part.recipient}|{scts}|{part.text}"
        if part.raw_hex is not None:
            key += f"|{part.raw_hex}"
    else:
        key = part.event_id
    return uuid.uuid5(_NAMESPACE, key)


def received_event(
    row: dict[str, Any], now: datetime, missing: list[int] | None = None
) -> LogEvent:
    """The `message.received` event of a stored message."""
    data = {
        "id": str(row["id"]),
        "from": row["sender"],
        "to": row["recipient"],
        "text": row["text"],
        "encoding": row["encoding"],
        "route": row["route"],
        "parts": row["parts_total"],
        "parts_received": row["parts_received"],
        "complete": row["complete"],
        "received_at": iso(row["received_at"]),
    }
    if row.get("raw_hex") is not None:
        data["raw_hex"] = row["raw_hex"]
    if missing:
        data["missing_parts"] = missing
    return LogEvent(
        event_id=stable_id(MESSAGE_RECEIVED, row["id"]),
        type=MESSAGE_RECEIVED,
        data=data,
        created_at=now,
        route=row["route"],
    )


def _group(part: InboundPart) -> PartGroup:
    assert part.concat is not None
    c = part.concat
    return PartGroup(part.route, part.sender, part.recipient, c.ref_bits, c.ref, c.total)


def assembled_text(parts: list[dict[str, Any]]) -> tuple[str, str | None]:
    """A long message's text and raw text (hex) from its parts, in order. The raw text is
    its parts' when any part has one. UCS-2 is decoded again from the octets of all parts,
    so a surrogate pair the sender cut between two parts is one character again."""
    text = "".join(p["text"] for p in parts)
    if all(p["raw_hex"] is None for p in parts):
        return text, None
    raw = "".join(p["raw_hex"] or raw_octets(p["text"], p["encoding"]).hex() for p in parts)
    if all(p["encoding"] == "ucs2" for p in parts):
        with contextlib.suppress(ValueError):  # a raw_hex that is not hex: keep the parts'
            whole, replaced = clean(bytes.fromhex(raw).decode("utf-16-be", "surrogatepass"))
            return whole, raw if replaced else None
    return text, raw


class Receiver:
    """Consumer handler of `received_queue` and the reassembly-timeout sweep."""

    def __init__(self, engine: AsyncEngine, reassembly_timeout: float) -> None:
        self.engine = engine
        self.repo = InboundRepository(engine)
        self.timeout = timedelta(seconds=reassembly_timeout)

    async def handle(self, part: InboundPart, info: DeliveryInfo) -> None:
        """Store one part (acked after commit). While the store is unreachable the part is
        retried here, in place: requeueing would spend the quorum queue's delivery limit
        and dead-letter incoming SMS during a database outage."""
        backoff = Backoff(0.1, STORE_RETRY_MAX_S)
        while True:
            try:
                result = await self.store(part)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                delay = backoff.next()
                log.warning("store unavailable, retrying in %.1fs: %r", delay, exc)
                await pause(delay)
        metrics.INBOUND_RECEIVED.labels(result).inc()

    async def store(self, part: InboundPart) -> str:
        """Store a part; returns stored, assembled, part or duplicate."""
        part = storable(part)
        now = utcnow()
        async with self.engine.begin() as conn:
            if part.concat is None or part.concat.total <= 1:
                row = {
                    "id": message_id_for(part),
                    "route": part.route,
                    "sender": part.sender,
                    "recipient": part.recipient,
                    "text": part.text,
                    "raw_hex": part.raw_hex,
                    "encoding": part.encoding,
                    "parts_total": 1,
                    "parts_received": 1,
                    "complete": True,
                    "received_at": part.received_at,
                }
                if not await self.repo.insert_message(conn, row):
                    return "duplicate"
                await record_events(conn, [received_event(row, now)])
                return "stored"
            group = _group(part)
            await self.repo.lock_group(conn, group)
            seq = part.concat.seq
            if await self.repo.seen_assembled(
                conn, group, seq, part.text, part.raw_hex, now - self.timeout
            ):
                return "duplicate"
            added = await self.repo.add_part(
                conn,
                {
                    "route": part.route,
                    "sender": part.sender,
                    "recipient": part.recipient,
                    "ref": part.concat.ref,
                    "ref_bits": part.concat.ref_bits,
                    "total": part.concat.total,
                    "seq": seq,
                    "text": part.text,
                    "raw_hex": part.raw_hex,
                    "encoding": part.encoding,
                    "event_id": part.event_id,
                    "received_at": part.received_at,
                },
            )
            if not added:
                return "duplicate"
            parts = await self.repo.open_parts(conn, group)
            if {p["seq"] for p in parts} >= set(range(1, group.total + 1)):
                await self._assemble(conn, group, parts, now, complete=True)
                return "assembled"
            return "part"

    async def _assemble(
        self,
        conn: AsyncConnection,
        group: PartGroup,
        parts: list[dict[str, Any]],
        now: datetime,
        complete: bool,
    ) -> None:
        parts = sorted(parts, key=lambda p: p["seq"])
        mid = uuid.uuid5(_NAMESPACE, "assembled|" + "|".join(sorted(p["event_id"] for p in parts)))
        encodings = {p["encoding"] for p in parts}
        text, raw_hex = assembled_text(parts)
        row = {
            "id": mid,
            "route": group.route,
            "sender": group.sender,
            "recipient": group.recipient,
            "text": text,
            "raw_hex": raw_hex,
            "encoding": "ucs2" if "ucs2" in encodings else parts[0]["encoding"],
            "parts_total": group.total,
            "parts_received": len(parts),
            "complete": complete,
            "received_at": min(p["received_at"] for p in parts),
        }
        await self.repo.insert_message(conn, row)
        await self.repo.close_parts(conn, [p["id"] for p in parts], mid)
        have = {p["seq"] for p in parts}
        missing = [s for s in range(1, group.total + 1) if s not in have]
        await record_events(conn, [received_event(row, now, missing)])

    async def sweep(self, limit: int = 100) -> int:
        """Deliver long messages still incomplete after the timeout; returns how many."""
        now = utcnow()
        done = 0
        async with self.engine.begin() as conn:
            groups = await self.repo.stale_groups(conn, now - self.timeout, limit)
        for group in groups:
            async with self.engine.begin() as conn:
                await self.repo.lock_group(conn, group)
                parts = await self.repo.open_parts(conn, group)
                # Re-checked under the lock: another process may have just completed it.
                if parts and min(p["received_at"] for p in parts) < now - self.timeout:
                    await self._assemble(conn, group, parts, now, complete=False)
                    done += 1
        metrics.INCOMPLETE_DELIVERED.inc(done)
        if groups or done:
            log.info("reassembly timeout: %d incomplete message(s) delivered", done)
        return done

    async def housekeeping(self) -> None:
        """Update the in-progress gauge; forget assembled parts older than twice the timeout."""
        metrics.REASSEMBLY_IN_PROGRESS.set(await self.repo.open_groups())
        await self.repo.purge_assembled(utcnow() - 2 * self.timeout)
