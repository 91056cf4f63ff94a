"""Incoming SMS and delivery reports: read, publish, and only then delete (TS 27.005 §3.4)."""

from __future__ import annotations

import asyncio
import logging
import re

from smsgw_modem.at.engine import Urc
from smsgw_modem.at.errors import AtError
from smsgw_modem.events import EventSink
from smsgw_modem.metrics import metrics
from smsgw_modem.modem import Modem, StoredMessage
from smsgw_shared.amqp import PublishError
from smsgw_shared.backoff import Backoff, pause
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


class Receiver:
    """Turns stored messages and `+CMTI`/`+CDSI`/`+CMT`/`+CDS` URCs into events."""

    def __init__(self, modem_id: str, route: str, events: EventSink) -> None:
        self.modem_id = modem_id
        self.route = route
        self._events = events
        # Sweep and URC reads take turns, so one stored message is not published twice.
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
            # Routed directly (+CNMI mt=2 / ds=1): it exists nowhere else, so keep trying
            # to publish it until the broker takes it (back-off up to 30 s).
            backoff = Backoff(0.5, 30.0)
            while True:
                try:
                    await self._publish_pdu(urc.pdu)
                    return
                except PublishError as exc:
                    delay = backoff.next()
                    log.warning(
                        "direct URC not published, retrying in %.1fs: %s",
                        delay,
                        exc,
                        extra={"modem": self.modem_id},
                    )
                    await pause(delay)

    async def sweep(self, modem: Modem) -> int:
        """`AT+CMGL=4`: publish and delete every received message and report; return the count."""
        done = 0
        async with self._lock:
            for stored in await modem.list_messages():
                if await self.process_stored(modem, stored):
                    done += 1
        return done

    async def process_stored(self, modem: Modem, stored: StoredMessage) -> bool:
        """Publish one stored message, then delete it; False when it stays in storage."""
        if stored.stat in (2, 3):
            return False  # TS 27.005 <stat> 2/3: stored outgoing messages, not ours to take
        try:
            published = await self._publish_pdu(stored.pdu)
        except PublishError as exc:
            log.warning(
                "publish failed; message kept for the next sweep",
                extra={"modem": self.modem_id, "index": stored.index, "error": str(exc)},
            )
            return False
        if not published:
            return False
        try:
            await modem.delete_message(stored.index)
        except AtError as exc:
            # Published but not deleted: the next sweep publishes a duplicate, never a loss.
            log.warning("AT+CMGD failed", extra={"modem": self.modem_id, "error": str(exc)})
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
