"""A simulated Huawei-class GSM modem: sessions, URCs, sending and the simulated network."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from smsgw_modem.sim import commands
from smsgw_modem.sim.session import Session
from smsgw_modem.sim.state import OUTCOME_STATUS, ModemState, SentPart, Stored
from smsgw_shared.sms import (
    PduError,
    SmsError,
    SmsSubmit,
    build_deliver_pdus,
    build_status_report_pdu,
    decode_pdu,
)

log = logging.getLogger(__name__)

NOISE = ("^RSSI: {rssi}", "^MODE: 5,4", "^BOOT: 20876098,0,0,0,75", "^DSFLOWRPT: 0,0,0,0,0,0,0")


class SimDevice:
    """One simulated modem; transports attach sessions to it."""

    def __init__(self, state: ModemState) -> None:
        self.state = state
        self.sessions: set[Session] = set()
        self.gone = False
        self.on_presence: Callable[[bool], None] | None = None  # transport: close/reopen
        self.command_log: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._noise: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one command at a time across sessions, as on a real port

    # -- sessions ------------------------------------------------------------------------
    def attach(self, session: Session) -> None:
        """A client connected."""
        if self.state.faults.hang_until_reconnect:
            self.state.faults.hang = False
            self.state.faults.hang_until_reconnect = False
        self.sessions.add(session)

    def detach(self, session: Session) -> None:
        """A client went away."""
        self.sessions.discard(session)

    def spawn(self, coro: object) -> None:
        """Run a background coroutine owned by the device."""
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def urc(self, line: str, pdu: str | None = None) -> None:
        """Send an unsolicited result code to every session (a hung modem sends nothing)."""
        if self.gone or self.state.faults.is_hung():
            return
        text = f"\r\n{line}\r\n" + (f"{pdu}\r\n" if pdu is not None else "")
        for session in list(self.sessions):
            session.write(text)

    def garbage(self, count: int) -> bytes:
        """Random junk bytes as a broken modem or line noise produces them."""
        junk = bytes(b for b in os.urandom(count * 2) if b not in (0x0D, 0x0A))[:count]
        return junk + b"\r\n"

    def write_garbage(self, count: int) -> None:
        """Write junk to every session now."""
        data = self.garbage(count)
        for session in list(self.sessions):
            session.write(data)

    # -- commands ------------------------------------------------------------------------
    async def execute(self, session: Session, line: str) -> None:
        """Run one command line and answer it."""
        self.command_log.append(line)
        del self.command_log[:-200]
        async with self._lock:
            faults = self.state.faults
            if faults.latency:
                await asyncio.sleep(faults.latency)
            if faults.is_hung() or self.gone:
                return
            if faults.garbage_responses > 0:
                faults.garbage_responses -= 1
                session.write(self.garbage(24))
            await commands.run_line(self, session, line)

    def answer(self, session: Session, lines: list[str], final: str = "OK") -> None:
        """Information lines then the final result (V.250 §5.7.1 verbose format)."""
        body = "\r\n" + "\r\n".join(lines) + "\r\n" if lines else ""
        session.write(body + f"\r\n{final}\r\n")

    async def submit(self, session: Session, pdu: str, length: int, *, cancel: bool) -> None:
        """The PDU typed after `AT+CMGS`'s prompt (TS 27.005 §3.5.1)."""
        async with self._lock:
            if self.state.faults.is_hung() or self.gone:
                return
            if cancel:
                self.answer(session, [])
                return
            faults = self.state.faults
            if faults.send_latency:
                self.state.submitting += 1  # the job is in the modem's hands: tests wait on it
                try:
                    await asyncio.sleep(faults.send_latency)
                finally:
                    self.state.submitting -= 1
            if faults.is_hung() or self.gone:
                return
            if faults.cms_count > 0 and faults.cms_error is not None:
                faults.cms_count -= 1
                session.write(f"\r\n+CMS ERROR: {faults.cms_error}\r\n")
                return
            try:
                decoded = decode_pdu(pdu, tpdu_length=length)
            except (PduError, SmsError) as exc:
                log.info("sim: bad PDU %r: %s", pdu, exc)
                session.write("\r\n+CMS ERROR: 304\r\n")  # invalid PDU mode parameter
                return
            if not isinstance(decoded, SmsSubmit):
                session.write("\r\n+CMS ERROR: 304\r\n")
                return
            mr = self.state.take_mr()
            part = _record(decoded, mr, pdu)
            self.state.sent.append(part)
            self.answer(session, [f"+CMGS: {mr}"])
            if decoded.status_report_request and self.state.reports.outcome != "none":
                self.spawn(self._status_report(part, datetime.now(UTC)))

    # -- the network ---------------------------------------------------------------------
    async def _status_report(self, part: SentPart, submitted: datetime) -> None:
        settings = self.state.reports
        await asyncio.sleep(settings.delay)
        status = settings.status
        if status is None:
            status = OUTCOME_STATUS.get(settings.outcome, 0)
        report = build_status_report_pdu(
            part.mr,
            part.recipient,
            status,
            scts=submitted.replace(microsecond=0),
            discharge_time=datetime.now(UTC).replace(microsecond=0),
            smsc=self.state.csca,
        )
        self.deliver_report(report.hex, report.tpdu_length)

    def deliver_report(self, pdu: str, length: int) -> None:
        """Hand a status report to the client per `+CNMI` <ds> (TS 27.005 §3.4.1)."""
        ds = self.state.cnmi[3]
        if ds == 1:
            self.urc(f"+CDS: {length}", pdu)
        elif ds == 2:
            index = self.state.store(Stored(0, pdu, length, "report"))
            if index is not None:
                self.urc(f'+CDSI: "SM",{index}')

    def inject(
        self, sender: str, text: str, encoding: str = "auto", flash: bool = False
    ) -> list[int]:
        """An SMS arrives from the network: store its parts and indicate them (`+CMTI`)."""
        pdus = build_deliver_pdus(
            text,
            sender,
            scts=datetime.now(UTC).replace(microsecond=0),
            encoding=encoding,  # type: ignore[arg-type]
            concat_ref=random.randrange(256),
            flash=flash,
            smsc=self.state.csca,
        )
        indices: list[int] = []
        mt = self.state.cnmi[1]
        for pdu in pdus:
            if mt == 2:
                self.urc(f"+CMT: ,{pdu.tpdu_length}", pdu.hex)
                continue
            index = self.state.store(Stored(0, pdu.hex, pdu.tpdu_length))
            if index is None:
                raise OverflowError("SIM storage full")
            indices.append(index)
            if mt in (1, 3):
                self.urc(f'+CMTI: "SM",{index}')
        return indices

    async def ussd_answer(self, code: str) -> None:
        """The network's USSD answer, as a `+CUSD` URC after the configured delay."""
        reply = self.state.ussd.get(code, self.state.ussd_default)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        self.urc(f'+CUSD: {reply.status},"{commands.encode_ussd(self, reply)}",{reply.dcs}')

    # -- presence and noise --------------------------------------------------------------
    def disconnect(self) -> None:
        """Drop every client connection (the device stays)."""
        for session in list(self.sessions):
            session.close()

    def set_gone(self, gone: bool, duration: float | None = None) -> None:
        """Unplug (close every session, refuse new ones) or plug back in."""
        self.gone = gone
        self.state.faults.gone = gone
        if gone:
            self.disconnect()
            if duration:
                self.spawn(self._back_after(duration))
        if self.on_presence is not None:
            self.on_presence(not gone)

    async def _back_after(self, duration: float) -> None:
        await asyncio.sleep(duration)
        if self.gone:
            self.set_gone(False)

    def reboot(self) -> None:
        """`AT+CFUN=1,1`: the modem restarts; clients see the port drop."""
        self.state.reset_volatile()
        self.spawn(self._reboot())

    async def _reboot(self) -> None:
        await asyncio.sleep(0.05)  # let the OK reach the client first
        self.disconnect()

    def start_noise(self) -> None:
        """(Re)start the `^RSSI`/`^MODE`/`^BOOT` timer per `noise_interval`."""
        if self._noise is not None:
            self._noise.cancel()
            self._noise = None
        if self.state.noise_interval > 0:
            self._noise = asyncio.create_task(self._noise_loop())

    async def _noise_loop(self) -> None:
        while True:
            await asyncio.sleep(self.state.noise_interval * random.uniform(0.5, 1.5))
            if self.state.curc:
                self.urc(random.choice(NOISE).format(rssi=self.state.rssi))

    async def close(self) -> None:
        """Stop timers and drop clients."""
        if self._noise is not None:
            self._noise.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.disconnect()


def _record(submit: SmsSubmit, mr: int, pdu: str) -> SentPart:
    concat = submit.concat
    text = submit.text
    return SentPart(
        mr=mr,
        recipient=submit.recipient.number,
        text=text,
        encoding=submit.dcs.encoding.value,
        udh=(
            {"ref": concat.ref, "seq": concat.seq, "total": concat.total, "bits": concat.ref_bits}
            if concat
            else None
        ),
        srr=submit.status_report_request,
        flash=submit.dcs.flash,
        validity=submit.validity_seconds,
        pdu=pdu,
        at=time.time(),
    )
