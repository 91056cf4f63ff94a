"""Incoming SMS and delivery reports: read, keep on local disk, delete from the SIM, publish.

A PDU the modem hands over goes into the worker's inbox (`inbox.py`, fsynced) before it is
deleted from the SIM (TS 27.005 §3.4) and leaves the inbox once the broker confirmed its
event; direct `+CMT`/`+CDS` PDUs go into the inbox as they arrive. While the broker is away
the SIM keeps emptying, nothing waits in memory only, and `flush` publishes what is left
once the broker is back (or after a restart).
"""

from __future__ import annotations

import asyncio
import logging
import re

from smsgw_modem.at.engine import Urc
from smsgw_modem.at.errors import AtError
from smsgw_modem.events import EventSink
from smsgw_modem.inbox import Inbox
from smsgw_modem.metrics import metrics
from smsgw_modem.modem import Modem, StoredMessage
from smsgw_shared.amqp import PublishError
from smsgw_shared.messages import Concat, InboundPart, StatusEvent
from smsgw_shared.messages.events import StatusState
from smsgw_shared.sms import (
    PduError,
    SmsDeliver,
    SmsError,
    SmsStatusReport,
    SmsSubmit,
    decode_pdu,
)

log = logging.getLogger(__name__)

_INDEX = re.compile(r'^\+C(?:MTI|DSI):\s*"?([^",]*)"?\s*,\s*(\d+)')
TP_ST_VALIDITY_EXPIRED = 0x46  # TS 23.040 §9.2.3.15


def report_state(status: int) -> StatusState:
    """TP-ST (TS 23.040 §9.2.3.15) to our state: completed, still trying, expired, failed."""
    if status <= 0x1F:
        return "delivered"
    if status <= 0x3F:
        return "enroute"
    if status == TP_ST_VALIDITY_EXPIRED:
        return "expired"
    return "undelivered"


def report_event(report: SmsStatusReport, route: str) -> StatusEvent:
    """The StatusEvent of one SMS-STATUS-REPORT, matched later by (route, TP-MR, recipient)."""
    state = report_state(report.status)
    delivered = state == "delivered"
    return StatusEvent(
        message_id=None,
        state=state,
        route=route,
        provider_id=str(report.message_ref),
        recipient=report.recipient.number,
        occurred_at=report.discharge_time,
        error_code=None if delivered else f"TP_ST_{report.status}",
        error=None if delivered else report.description,
    )


def inbound_part(deliver: SmsDeliver, route: str) -> InboundPart:
    """The InboundPart of one SMS-DELIVER (one part of a long SMS carries its concat)."""
    concat = deliver.concat
    if deliver.text is None:
        text, encoding = deliver.user_data.payload.hex(), "binary"
    else:
        text, encoding = deliver.text, deliver.dcs.encoding.value
    return InboundPart(
        route=route,
        sender=deliver.sender.number,
        text=text,
        encoding=encoding,
        concat=(
            Concat(ref=concat.ref, total=concat.total, seq=concat.seq, ref_bits=concat.ref_bits)
            if concat
            else None
        ),
        smsc_timestamp=deliver.scts,
    )


def _is_outgoing(pdu: str) -> bool:
    """An SMS-SUBMIT stored in the SIM (a draft or sent copy), not something received."""
    try:
        return isinstance(decode_pdu(pdu), SmsSubmit)
    except (PduError, SmsError):
        return False


class Receiver:
    """Turns stored messages and `+CMTI`/`+CDSI`/`+CMT`/`+CDS` URCs into events."""

    def __init__(self, modem_id: str, route: str, events: EventSink, inbox: Inbox) -> None:
        self.modem_id = modem_id
        self.route = route
        self._events = events
        self.inbox = inbox
        # Sweep, URC reads and inbox flushes take turns, so one PDU is not published twice.
        self._lock = asyncio.Lock()

    async def handle_urc(self, modem: Modem, urc: Urc) -> None:
        """React to one SMS-related URC."""
        line = urc.line
        if line.startswith(("+CMTI:", "+CDSI:")):
            found = _INDEX.match(line)
            if not found:
                log.warning("unparseable URC", extra={"modem": self.modem_id, "urc": line})
                return
            async with self._lock:
                stored = await modem.read_message(int(found.group(2)))
                if stored is not None:
                    await self.process_stored(modem, stored)
        elif line.startswith(("+CMT:", "+CDS:")) and urc.pdu:
            # Routed directly (+CNMI mt=2 / ds=1): it exists nowhere else but on our disk.
            async with self._lock:
                n = await self.inbox.add(urc.pdu)
                await self._deliver(n, urc.pdu)

    async def sweep(self, modem: Modem) -> int:
        """`AT+CMGL=4`: take every received message and report; return the count."""
        done = 0
        async with self._lock:
            for stored in await modem.list_messages():
                if await self.process_stored(modem, stored):
                    done += 1
        return done

    async def process_stored(self, modem: Modem, stored: StoredMessage) -> bool:
        """Keep one stored message in the inbox, delete it, publish it; False when it is
        not ours to take (stored outgoing messages) and stays in storage."""
        if stored.stat in (2, 3) or _is_outgoing(stored.pdu):
            return False  # TS 27.005 <stat> 2/3: stored outgoing messages, not ours to take
        n = await self.inbox.add(stored.pdu)
        try:
            await modem.delete_message(stored.index)
        except AtError as exc:
            # Kept and not deleted: the next sweep takes it again, a duplicate, never a loss.
            log.warning("AT+CMGD failed", extra={"modem": self.modem_id, "error": str(exc)})
        await self._deliver(n, stored.pdu)
        return True

    async def flush(self) -> int:
        """Publish what the inbox still holds, oldest first, until the broker refuses;
        returns how many went."""
        done = 0
        async with self._lock:
            for n, pdu in self.inbox.pending():
                if not await self._deliver(n, pdu):
                    break
                done += 1
        if done:
            log.info("inbox flushed", extra={"modem": self.modem_id, "count": done})
        return done

    async def _deliver(self, n: int, pdu: str) -> bool:
        """Publish one inbox entry; forget it once confirmed. False: kept for a flush."""
        try:
            await self._publish_pdu(pdu)
        except PublishError as exc:
            log.warning(
                "not published; kept in the inbox until the broker is back",
                extra={"modem": self.modem_id, "entry": n, "error": str(exc)},
            )
            return False
        await self.inbox.done(n)
        return True

    async def _publish_pdu(self, pdu: str) -> bool:
        try:
            decoded = decode_pdu(pdu)
        except (PduError, SmsError) as exc:
            # Undecodable: published as a binary message carrying the raw PDU in hex (so it
            # is stored and reaches webhooks), then deleted so that it does not fill the
            # storage and come back in every sweep.
            log.error(
                "undecodable PDU in storage; publishing it raw",
                extra={"modem": self.modem_id, "pdu": pdu, "error": str(exc)},
            )
            await self._events.inbound(
                InboundPart(route=self.route, sender="unknown", text=pdu, encoding="binary")
            )
            return True
        m = metrics()
        if isinstance(decoded, SmsStatusReport):
            event = report_event(decoded, self.route)
            await self._events.status(event)
            m.dlrs.labels(self.modem_id, event.state).inc()
            log.info(
                "delivery report",
                extra={"modem": self.modem_id, "mr": decoded.message_ref, "state": event.state},
            )
            return True
        if isinstance(decoded, SmsSubmit):
            return False
        part = inbound_part(decoded, self.route)
        await self._events.inbound(part)
        m.received.labels(self.modem_id).inc()
        log.info(
            "incoming SMS part published",
            extra={"modem": self.modem_id, "inbound_event": part.event_id},
        )
        return True
