"""USSD and balance requests over RabbitMQ (request/reply), answered by one modem."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from smsgw_modem.at.errors import AtError
from smsgw_modem.events import EventSink
from smsgw_modem.metrics import metrics
from smsgw_modem.modem import Modem
from smsgw_modem.ussd import (
    DCS_GSM7,
    UssdError,
    UssdReply,
    encode_request,
    is_huawei,
    parse_balance,
    parse_cusd,
)
from smsgw_shared.amqp import DeliveryInfo
from smsgw_shared.config import ScriptStep
from smsgw_shared.messages import ModemReply, ModemRequest

if TYPE_CHECKING:
    from smsgw_modem.supervisor import ModemSupervisor

log = logging.getLogger(__name__)

# TS 27.007 §7.15 <m>: 0 no further action, 1 further action required (menu); 2 terminated
# by network, 4 not supported, 5 network timeout.
USSD_OK = frozenset({0, 1})


class UssdService:
    """Runs USSD sessions and balance scripts on one modem."""

    def __init__(self, supervisor: ModemSupervisor, events: EventSink) -> None:
        self.sup = supervisor
        self.config = supervisor.config
        self._events = events

    def hex_gsm7(self, modem: Modem) -> bool:
        """Whether DCS-15 answers come as packed GSM-7 hex: configured, or a Huawei modem
        (`AT+CGMI`), whose firmware sends them so by default. Other modems' hex answers are
        detected by what they decode to (`ussd.parse_cusd`)."""
        return self.config.ussd_encoding == "gsm7-hex" or is_huawei(modem.info.manufacturer)

    async def handle(self, request: ModemRequest, info: DeliveryInfo) -> None:
        """Answer one ModemRequest with a ModemReply on its reply queue."""
        reply = await self.answer(request)
        metrics().ussd.labels(self.config.id, str(reply.ok).lower()).inc()
        # The AMQP reply_to is the real address: RabbitMQ rewrites `amq.rabbitmq.reply-to`
        # into the caller's channel-specific name there, not inside our JSON payload.
        await self._events.reply(info.reply_to or request.reply_to, reply)

    async def answer(self, request: ModemRequest) -> ModemReply:
        """Run the request and build the reply (errors become `ok=False`)."""

        def reply(ok: bool, **fields: Any) -> ModemReply:
            modem_id = self.config.id
            return ModemReply(request_id=request.request_id, modem_id=modem_id, ok=ok, **fields)

        try:
            async with asyncio.timeout(request.timeout):
                modem = await self.sup.wait_ready(wait=True)
                async with self.sup.ussd_lock:
                    if request.action == "ussd":
                        if not request.code:
                            return reply(False, error="no USSD code given")
                        answer = await self.ussd(modem, request.code, request.timeout)
                        return reply(True, raw=answer.text)
                    if self.config.balance_script:
                        answer = await self.run_script(modem, self.config.balance_script)
                    else:
                        answer = await self.ussd(modem, self.config.balance_ussd, request.timeout)
        except TimeoutError:
            return reply(False, error=f"no answer within {request.timeout:g}s")
        except (AtError, UssdError) as exc:
            return reply(False, error=str(exc))
        except Exception as exc:  # Requeue while stopping, or a bug: answer rather than hang
            log.exception("RPC failed", extra={"modem": self.config.id})
            return reply(False, error=f"{type(exc).__name__}: {exc}")
        # A reply that could not be decoded is returned as it came, with no amount.
        balance = parse_balance(answer.text, answer.decoded)
        return reply(True, raw=answer.text, amount=balance.amount, currency=balance.currency)

    async def ussd(self, modem: Modem, code: str, timeout: float) -> UssdReply:
        """`AT+CUSD=1,"<code>",15` and wait for the `+CUSD:` answer (TS 27.007 §7.15)."""
        waiter = self.sup.expect_cusd()
        try:
            request = encode_request(code, self.config.ussd_encoding)
            lines = await modem.cmd(f'AT+CUSD=1,"{request}",{DCS_GSM7}', timeout)
            direct = [line for line in lines if line.startswith("+CUSD:")]
            line = direct[0] if direct else await waiter
        finally:
            self.sup.drop_cusd(waiter)
        reply = parse_cusd(line, self.hex_gsm7(modem))
        if reply.status not in USSD_OK:
            raise UssdError(f"USSD failed: status {reply.status} {reply.text!r}".strip())
        if reply.status == 1:
            # A menu awaits an answer we will not give: close the session (AT+CUSD=2).
            try:
                await modem.cmd("AT+CUSD=2")
            except AtError as exc:
                log.debug("AT+CUSD=2 failed: %s", exc)
        return reply

    async def run_script(self, modem: Modem, steps: list[ScriptStep]) -> UssdReply:
        """Run send/expect steps (e.g. SIM-toolkit AT+STGI/AT+STGR); return the last reply."""
        lines: list[str] = []
        for step in steps:
            lines = await modem.engine.exchange(step.send, step.expect, step.timeout, raw=step.raw)
        return self._reply_text(modem, lines)

    def _reply_text(self, modem: Modem, lines: list[str]) -> UssdReply:
        texts: list[str] = []
        for line in lines:
            if line.startswith("+CUSD:"):
                return parse_cusd(line, self.hex_gsm7(modem))
            if line.startswith(("+STGI:", "^STGI:")):
                quoted = line.split('"')[1::2]
                texts.extend(q for q in quoted if q)
            elif line not in ("OK",) and not line.startswith(
                ("+STIN:", "^STIN:", "^RSSI:", "^MODE:", "^BOOT:")
            ):
                texts.append(line)
        text = "\n".join(texts)
        return UssdReply(0, text, None, text)
