"""Sending one job: SMS-SUBMIT PDUs part by part, journal, and the outcome event.

Outcomes (shared.amqp): return → ack (after the outcome event is confirmed); `RetryLater`
for a transient failure while attempts remain; `Requeue` when the modem is not there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from smsgw_modem.at.errors import AtError, AtTimeout
from smsgw_modem.events import CancelRegistry, EventSink
from smsgw_modem.journal import SendJournal
from smsgw_modem.metrics import metrics
from smsgw_shared.amqp import DeliveryInfo, PublishError, RetryLater
from smsgw_shared.messages import PartRef, PayloadError, SendJob, StatusEvent
from smsgw_shared.observability import current_message_id
from smsgw_shared.sms import ConcatRefCounter, EncodedPdu, SmsError, build_submit_pdus

if TYPE_CHECKING:
    from smsgw_modem.modem import Modem
    from smsgw_modem.supervisor import ModemSupervisor

log = logging.getLogger(__name__)


class JobSender:
    """Handles the send jobs of one modem (its own queue and the pools it serves)."""

    def __init__(
        self,
        supervisor: ModemSupervisor,
        events: EventSink,
        journal: SendJournal,
        canceled: CancelRegistry,
    ) -> None:
        self.sup = supervisor
        self.config = supervisor.config
        self.modem_id = supervisor.config.id
        self.route = supervisor.route
        self._events = events
        self._journal = journal
        self._canceled = canceled
        self._refs = ConcatRefCounter(8)
        self._last_send = 0.0

    async def handle_own(self, job: SendJob, info: DeliveryInfo) -> None:
        """A job from the modem's own queue: it waits while the modem is down."""
        await self.handle(job, info, wait=True)

    async def handle_pool(self, job: SendJob, info: DeliveryInfo) -> None:
        """A job from a pool queue: given back at once if this modem cannot take it."""
        await self.handle(job, info, wait=False)

    async def handle(self, job: SendJob, info: DeliveryInfo, *, wait: bool) -> None:
        """Send one job, or re-publish its recorded outcome, or skip it if canceled."""
        token = current_message_id.set(job.message_id)
        try:
            if job.message_id in self._canceled:
                log.info(
                    "job canceled; skipped", extra={"modem": self.modem_id, "job_id": job.job_id}
                )
                return
            recorded = self._journal.outcome(job.job_id)
            if recorded is not None:
                log.info("outcome already recorded; re-publishing", extra={"job_id": job.job_id})
                await self._events.status(recorded)
                return
            async with self.sup.send_lock:
                await self._send(job, info, wait)
        finally:
            current_message_id.reset(token)

    def _build(self, job: SendJob, concat_ref: int) -> list[EncodedPdu]:
        return build_submit_pdus(
            job.text,
            job.to,
            encoding=job.encoding,
            concat_ref=concat_ref,
            max_parts=255,
            validity=job.validity,
            status_report=job.dlr and self.config.delivery_reports,
            flash=job.flash,
        )

    async def _pause(self) -> None:
        left = self._last_send + self.config.send_pause - time.monotonic()
        if left > 0:
            await asyncio.sleep(left)

    async def _send(self, job: SendJob, info: DeliveryInfo, wait: bool) -> None:
        modem = await self.sup.wait_ready(wait=wait)
        m = metrics()
        progress = self._journal.progress(job.job_id)
        concat_ref = (
            progress.concat_ref
            if progress.parts and progress.concat_ref is not None
            else self._refs.next()
        )
        try:
            pdus = self._build(job, concat_ref)
        except SmsError as exc:
            await self._finish_failed(
                job, "ENCODING", str(exc), retryable=False, mrs=progress.parts
            )
            return
        # The `sending` confirm (~1-2 ms) overlaps the modem's work; it is awaited before the
        # outcome is published, so the two arrive in order.
        sending = asyncio.ensure_future(
            self._events.status(
                StatusEvent(
                    message_id=job.message_id, state="sending", route=self.route, job_id=job.job_id
                )
            )
        )
        started = time.monotonic()
        mrs = dict(progress.parts)
        try:
            for index, pdu in enumerate(pdus, start=1):
                if index in mrs:
                    continue  # accepted before a crash or a failed later part
                await self._pause()
                # Shielded: if the broker drops and the handler is cancelled mid-send, the
                # send still completes and is journalled, so the redelivery skips the part.
                mr = await asyncio.shield(
                    self._send_part(modem, job.job_id, concat_ref, index, pdu.hex, pdu.tpdu_length)
                )
                mrs[index] = mr
                m.parts.labels(self.modem_id).inc()
        except AtError as exc:
            await self._settle(sending)
            if isinstance(exc, AtTimeout):
                self.sup.suspect()
            await self._failed(job, info, exc, mrs)
            return
        except BaseException:
            sending.cancel()
            raise
        m.send_seconds.labels(self.modem_id).observe(time.monotonic() - started)
        event = StatusEvent(
            message_id=job.message_id,
            state="sent",
            route=self.route,
            parts=[PartRef(index=i, provider_id=str(mr)) for i, mr in sorted(mrs.items())],
            provider_id=str(mrs[1]),
            recipient=job.to,
            job_id=job.job_id,
        )
        # Journal first: a cancel while awaiting the `sending` confirm must not lose the fact
        # that the message went out (the redelivery republishes this outcome instead).
        await self._journal.record_outcome(job.job_id, event)
        await self._settle(sending)
        await self._events.status(event)
        m.sends.labels(self.modem_id, "sent").inc()
        log.info("sent", extra={"modem": self.modem_id, "parts": len(pdus), "job_id": job.job_id})

    async def _send_part(
        self, modem: Modem, job_id: str, concat_ref: int, index: int, pdu: str, length: int
    ) -> int:
        """Send one part and journal its TP-MR before anything else can interrupt."""
        mr = await modem.send_pdu(pdu, length)
        self._last_send = time.monotonic()
        await self._journal.record_part(job_id, concat_ref, index, mr)
        return mr

    @staticmethod
    async def _settle(sending: asyncio.Future[None]) -> None:
        """Wait for the `sending` event; its loss is logged, the outcome event supersedes it."""
        try:
            await sending
        except PublishError as exc:
            log.warning("'sending' event not published: %s", exc)

    async def _failed(
        self, job: SendJob, info: DeliveryInfo, exc: AtError, mrs: dict[int, int]
    ) -> None:
        reason = f"{exc.error_code}: {exc}"
        self.sup.note_error(reason)
        if exc.temporary and not info.last_attempt:
            metrics().sends.labels(self.modem_id, "retry").inc()
            log.warning("send failed; will retry", extra={"modem": self.modem_id, "reason": reason})
            raise RetryLater(reason)
        await self._finish_failed(job, exc.error_code, str(exc), retryable=exc.temporary, mrs=mrs)

    async def on_dead_letter(self, body: bytes, reason: str) -> None:
        """Consumer hook: a job about to be dead-lettered gets its `failed` event first."""
        try:
            job = SendJob.from_bytes(body)
        except PayloadError:
            return  # nothing to attribute the failure to; the DLQ keeps the body
        recorded = self._journal.outcome(job.job_id)
        if recorded is not None:
            # It was sent (or failed) already: report that, not a dead-letter failure.
            await self._events.status(recorded)
            return
        await self._finish_failed(job, "DEAD_LETTERED", reason[:500], retryable=False, mrs={})

    async def _finish_failed(
        self, job: SendJob, code: str, error: str, *, retryable: bool, mrs: dict[int, int]
    ) -> None:
        event = StatusEvent(
            message_id=job.message_id,
            state="failed",
            route=self.route,
            parts=[PartRef(index=i, provider_id=str(mr)) for i, mr in sorted(mrs.items())],
            recipient=job.to,
            error_code=code,
            error=error,
            retryable=retryable,
            job_id=job.job_id,
        )
        await self._journal.record_outcome(job.job_id, event)
        await self._events.status(event)
        metrics().sends.labels(self.modem_id, "failed").inc()
        log.warning(
            "send failed", extra={"modem": self.modem_id, "error_code": code, "error": error}
        )
