"""What the SMSC sends us: delivery receipts and incoming SMS (deliver_sm / data_sm).

Each becomes an event on the broker; the deliver_sm_resp goes out only after the broker
confirmed it, so a crash in between makes the SMSC redeliver rather than lose it. While the
broker is away the answer is held (each PDU has its own task) up to the bind's
`event_hold`; only then ESME_RX_T_APPN (§5.1.3: temporary, retry later).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from smsgw_shared.amqp import Outgoing, Packer, Publisher, PublishError, Topology
from smsgw_shared.backoff import Backoff
from smsgw_shared.config import SmppBindConfig
from smsgw_shared.messages import Concat, InboundPart, StatusEvent, utcnow
from smsgw_shared.sms import Encoding, SmppText, SmsError, decode_short_message
from smsgw_shared.sms.pdu_fields import parse_dcs
from smsgw_smpp import pdu as sp
from smsgw_smpp.dlr import is_receipt, parse_receipt, receipt_body
from smsgw_smpp.ids import normalise
from smsgw_smpp.metrics import SmppMetrics
from smsgw_smpp.status import ESME_RX_T_APPN

log = logging.getLogger(__name__)

_ENCODING_NAMES = {0: "gsm7", 1: "ascii", 3: "latin1", 6: "iso8859-5", 7: "iso8859-8", 8: "ucs2"}


def e164(addr: str, ton: int) -> str:
    """`+` in front of an international number (TON 1), other addresses as they are."""
    return f"+{addr}" if ton == 1 and addr.isdigit() else addr


def _is_ucs2(dc: int) -> bool:
    """data_coding 8, or a GSM DCS group (≥ 0xC0) that says UCS-2 (SMPP 3.4 §5.2.19)."""
    return dc == 8 or (dc >= 0xC0 and parse_dcs(dc).encoding is Encoding.UCS2)


def _decode(pdu: sp.Pdu, body: bytes, dc: int, esm: int) -> SmppText:
    return decode_short_message(
        body,
        dc,
        esm,
        sar_msg_ref_num=pdu.tlv_int(sp.TLV_SAR_MSG_REF_NUM),
        sar_total_segments=pdu.tlv_int(sp.TLV_SAR_TOTAL_SEGMENTS),
        sar_segment_seqnum=pdu.tlv_int(sp.TLV_SAR_SEGMENT_SEQNUM),
    )


def _ucs2_with_lone_surrogates(pdu: sp.Pdu, body: bytes, dc: int, esm: int) -> SmppText | None:
    """UCS-2 that decodes but for lone surrogates (a sender that cut an emoji between two
    parts): U+FFFD in their place; the caller keeps the octets. None if it is not that."""
    if not _is_ucs2(dc):
        return None
    try:
        binary = _decode(pdu, body, 2, esm)  # 2: octets as they are, UDH and SAR parsed
    except SmsError:
        return None
    if len(binary.payload) % 2:
        return None
    text = binary.payload.decode("utf-16-be", "replace")
    return SmppText(text, binary.payload, binary.udh, binary.concat)


def inbound_part(pdu: sp.Pdu, route: str) -> InboundPart:
    """An `InboundPart` from a deliver_sm/data_sm that is not a receipt."""
    dc = pdu.num("data_coding")
    esm = pdu.num("esm_class")
    body = pdu.raw("short_message") or pdu.tlvs.get(sp.TLV_MESSAGE_PAYLOAD, b"")
    text: str | None = None
    concat: Concat | None = None
    payload = body
    raw_hex: str | None = None
    decoded: SmppText | None = None
    try:
        decoded = _decode(pdu, body, dc, esm)
    except SmsError as exc:
        decoded = _ucs2_with_lone_surrogates(pdu, body, dc, esm)
        if decoded is None:
            # Never drop an SMS because it does not decode: pass its bytes on as hex.
            log.warning("incoming SMS does not decode (%s); kept as hex", exc)
        else:
            raw_hex = decoded.payload.hex()
    if decoded is not None:
        text, payload = decoded.text, decoded.payload
        if decoded.concat is not None and decoded.concat.total > 1:
            c = decoded.concat
            concat = Concat(ref=c.ref, total=c.total, seq=c.seq, ref_bits=c.ref_bits)
    if text is None:
        text, encoding = payload.hex(), "binary"
    else:
        encoding = _ENCODING_NAMES.get(dc & 0x0F if dc >= 0xC0 else dc, "gsm7")
        if dc >= 0xC0:  # as decoded: 0xE0-0xEF are UCS-2 (TS 23.038 §4), the rest GSM-7
            encoding = "ucs2" if _is_ucs2(dc) else "gsm7"
    return InboundPart(
        route=route,
        sender=e164(pdu.text("source_addr"), pdu.num("source_addr_ton")),
        recipient=e164(pdu.text("destination_addr"), pdu.num("dest_addr_ton")) or None,
        text=text,
        encoding=encoding,
        concat=concat,
        raw_hex=raw_hex,
    )


class DeliveryHandler:
    """The deliver_sm/data_sm handler of one bind (`SmppConnection`'s `on_request`)."""

    def __init__(
        self,
        cfg: SmppBindConfig,
        publisher: Publisher,
        topology: Topology,
        metrics: SmppMetrics,
        events: Packer | None = None,
    ) -> None:
        self.cfg = cfg
        self.route = f"smpp:{cfg.id}"
        self.publisher = publisher
        self.events = events  # status events go packed through it, when given
        self.topology = topology
        self.metrics = metrics
        self._m_receipts: dict[str, Counter] = {}  # state → its labelled counter
        self.receipts = 0
        self.inbound = 0

    async def __call__(self, pdu: sp.Pdu) -> int:
        """Publish what the PDU says; the returned status goes into deliver_sm_resp."""
        if is_receipt(pdu):
            return await self._receipt(pdu)
        return await self._incoming(pdu)

    async def _publish(self, key: str, payload: StatusEvent | InboundPart) -> int:
        """0 once the broker confirmed the event. While it is away the answer is kept back,
        trying again, up to `event_hold` seconds (a brief outage then costs the SMSC a
        slower answer, not a retry it may never make); only then ESME_RX_T_APPN."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.event_hold
        backoff = Backoff(0.2, 2.0)
        held = False
        item = Outgoing(self.topology.events_exchange, key, payload)
        sink: Publisher | Packer = self.publisher
        if self.events is not None and isinstance(payload, StatusEvent):
            sink = self.events
        while True:
            try:
                # asyncio.timeout, not wait_for: no task per receipt
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await sink.publish(item)
            except (PublishError, TimeoutError) as exc:
                left = deadline - loop.time()
                if left <= 0:
                    log.warning(
                        "event not confirmed within %gs (%s); answering ESME_RX_T_APPN",
                        self.cfg.event_hold,
                        exc,
                        extra={"bind": self.cfg.id},
                    )
                    if held:
                        self.metrics.held.labels(self.cfg.id, "refused").inc()
                    return ESME_RX_T_APPN
                if not held:
                    held = True
                    log.warning(
                        "event not confirmed (%s); holding the answer up to %gs",
                        exc,
                        self.cfg.event_hold,
                        extra={"bind": self.cfg.id},
                    )
                await asyncio.sleep(min(backoff.next(), left))
                continue
            if held:
                self.metrics.held.labels(self.cfg.id, "confirmed").inc()
            return 0

    async def _receipt(self, pdu: sp.Pdu) -> int:
        receipt = parse_receipt(pdu)
        if receipt is None:
            # Counted and logged with its text: an operator can still find it.
            self.metrics.receipts_unparsed.labels(self.cfg.id).inc()
            log.warning(
                "receipt without a message id",
                extra={"bind": self.cfg.id, "body": receipt_body(pdu)},
            )
            return 0
        written_as = self.cfg.receipt_id_format if receipt.id_from_text else "same"
        provider_id = normalise(receipt.message_id, self.cfg.id_format, written_as)
        event = StatusEvent(
            message_id=None,
            state=receipt.state,  # type: ignore[arg-type]
            route=self.route,
            provider_id=provider_id,
            recipient=e164(pdu.text("source_addr"), pdu.num("source_addr_ton")) or None,
            error_code=receipt.error_code,
            error=receipt.stat or None,
            occurred_at=receipt.done_date or utcnow(),
        )
        status = await self._publish(self.topology.status_key(event.state), event)
        if status == 0:
            self.receipts += 1
            counter = self._m_receipts.get(event.state)
            if counter is None:
                counter = self.metrics.receipts.labels(self.cfg.id, event.state)
                self._m_receipts[event.state] = counter
            counter.inc()
        return status

    async def _incoming(self, pdu: sp.Pdu) -> int:
        part = inbound_part(pdu, self.route)
        status = await self._publish(self.topology.inbound_key(self.route), part)
        if status == 0:
            self.inbound += 1
            self.metrics.inbound.labels(self.cfg.id).inc()
        return status
