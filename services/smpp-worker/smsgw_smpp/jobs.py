"""The send-job handler of one bind: split, submit every part inside the window, publish
the outcome, and return (ack) or raise an outcome for the consumer.

- every part answered ESME_ROK → `sent` with each part's provider id (normalised);
- a permanent status (ESME_RINVDSTADR, …) → `failed` with the status name, acked;
- throttling (ESME_RTHROTTLED/RMSGQFUL) → the bind's rate halves and the part is sent again
  through the slower bucket; other transient statuses → `RetryLater` (delay queue) while
  attempts remain, then `failed`;
- the session drops with parts in flight → wait briefly for the rebind and send those parts
  again (counted as possible duplicates: the SMSC may have taken the first copy), else
  `Requeue` so the job goes back to the queue, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import Counter

from smsgw_shared.amqp import (
    DeliveryInfo,
    Outgoing,
    Packer,
    Publisher,
    PublishError,
    Requeue,
    RetryLater,
    Topology,
)
from smsgw_shared.messages import PartRef, PayloadError, SendJob, StatusEvent
from smsgw_shared.observability import current_message_id
from smsgw_shared.sms import ConcatRefCounter, SmsError
from smsgw_smpp.bind import SmppBind
from smsgw_smpp.connection import Disconnected, NotBound, ResponseTimeout
from smsgw_smpp.encode import SubmitPart, build_submits
from smsgw_smpp.ids import normalise
from smsgw_smpp.status import THROTTLE, is_transient, status_name

log = logging.getLogger(__name__)

THROTTLE_TRIES = 12  # resends of one part after throttling before the job goes to a delay queue
RESEND_TRIES = 3  # resends after a timeout or a dropped session
PUBLISH_TRIES = 3


class BoundedSet:
    """A set that forgets its oldest entries past `size` (canceled ids, finished jobs)."""

    def __init__(self, size: int = 100_000) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, key: str) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items


class IdMap:
    """Normalised provider id → the SMSC's own spelling (for query_sm), bounded."""

    def __init__(self, size: int = 200_000) -> None:
        self._items: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def put(self, canonical: str, raw: str) -> None:
        if canonical != raw:
            self._items[canonical] = raw
            if len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, canonical: str) -> str | None:
        return self._items.get(canonical)


@dataclass(slots=True)
class PartResult:
    """How one part ended: a provider id, or an SMPP status / a lost session."""

    index: int
    provider_id: str | None = None
    status: int = 0
    error: str | None = None
    disconnected: bool = False
    transient: bool = False  # no answer at all (timeouts): worth another attempt


class JobSender:
    """Handles `SendJob`s for one bind (`Consumer` handler)."""

    def __init__(
        self,
        bind: SmppBind,
        publisher: Publisher,
        topology: Topology,
        canceled: BoundedSet,
        ids: IdMap | None = None,
        events: Packer | None = None,
    ) -> None:
        self.bind = bind
        self.cfg = bind.cfg
        self.publisher = publisher
        # Status events go packed through `events` when given (`amqp/packing.py`).
        self.events: Publisher | Packer = events or publisher
        self.topology = topology
        self.canceled = canceled
        self.ids = ids or IdMap()
        self.metrics = bind.metrics
        self._m_jobs: dict[str, Counter] = {}  # outcome → its labelled counter
        self._refs = ConcatRefCounter(8)
        self._sar_refs = ConcatRefCounter(16)
        self._done: OrderedDict[str, StatusEvent] = OrderedDict()
        self.duplicates = 0
        self.rebind_wait = min(5.0, max(1.0, 4 * self.cfg.reconnect_min))

    async def handle(self, job: SendJob, info: DeliveryInfo) -> None:
        """Send one job; return to ack it, raise an outcome otherwise."""
        current_message_id.set(job.message_id)
        if job.message_id in self.canceled:
            log.info("job canceled before sending; skipped", extra={"bind": self.bind.id})
            self._count("canceled")
            return
        done = self._done.get(job.job_id)
        if done is not None:
            # Sent before, but the ack was lost: publish the outcome again, never the SMS.
            await self._publish(done)
            self._count("redelivered")
            return
        try:
            parts = build_submits(job, self.cfg, self._refs, self._sar_refs)
        except SmsError as exc:
            await self._publish(self._failed(job, [], "ESME_RINVMSGLEN", str(exc), False))
            self._count("failed")
            return
        if not await self.bind.wait_bound(self.rebind_wait):
            raise Requeue(f"bind {self.bind.id} is not bound")
        # Shielded: if the broker drops and cancels this handler mid-window, the submits
        # still complete and a fully accepted job is remembered, so its redelivery
        # republishes the outcome instead of sending the SMS again.
        results = await asyncio.shield(self._submit_all(job, parts))
        await self._finish(job, info, results)

    async def _submit_all(self, job: SendJob, parts: list[SubmitPart]) -> list[PartResult]:
        if len(parts) == 1:  # most SMS: no gather (a task per part)
            results = [await self._submit(parts[0])]
        else:
            results = list(await asyncio.gather(*(self._submit(p) for p in parts)))
        if all(r.provider_id for r in results):
            self._remember(job.job_id, self._sent_event(job, results))
        return results

    def _sent_event(self, job: SendJob, results: list[PartResult]) -> StatusEvent:
        ok = [PartRef(index=r.index, provider_id=r.provider_id) for r in results if r.provider_id]
        return StatusEvent(
            message_id=job.message_id,
            state="sent",
            route=self.bind.route,
            parts=ok,
            provider_id=ok[0].provider_id if ok else None,
            recipient=job.to,
            job_id=job.job_id,
        )

    async def on_dead_letter(self, body: bytes, reason: str) -> None:
        """Consumer hook: a job about to be dead-lettered gets its `failed` event first."""
        try:
            job = SendJob.from_bytes(body)
        except PayloadError:
            return  # nothing to attribute the failure to; the DLQ keeps the body
        # Already sent (or failed) by this process: report that, not a dead-letter failure.
        event = self._done.get(job.job_id) or self._failed(
            job, [], "DEAD_LETTERED", reason[:500], False
        )
        await self.publisher.publish(
            Outgoing(self.topology.events_exchange, self.topology.status_key("failed"), event)
        )

    async def _finish(self, job: SendJob, info: DeliveryInfo, results: list[PartResult]) -> None:
        failed = [r for r in results if r.provider_id is None]
        if not failed:
            event = self._done.get(job.job_id) or self._sent_event(job, results)
            await self._publish(event)
            self._count("sent")
            return
        ok = [PartRef(index=r.index, provider_id=r.provider_id) for r in results if r.provider_id]
        permanent = [
            r for r in failed if not (r.disconnected or r.transient or is_transient(r.status))
        ]
        if permanent:
            first = permanent[0]
            name = first.error or status_name(first.status)
            event = self._failed(job, ok, name, f"SMSC refused part {first.index}", False)
            self._remember(job.job_id, event)
            await self._publish(event)
            self._count("failed")
            return
        if ok:
            # The parts already accepted will be sent again with the retry.
            self.duplicates += len(ok)
            self.metrics.duplicates.labels(self.bind.id).inc(len(ok))
        if any(r.disconnected for r in failed):
            self._count("requeued")
            raise Requeue(f"bind {self.bind.id} disconnected with the job in flight")
        first = failed[0]
        name = first.error or status_name(first.status)
        if info.last_attempt:
            await self._publish(self._failed(job, ok, name, "retries exhausted", True))
            self._count("failed")
            return
        self._count("retry")
        raise RetryLater(f"{name} on part {first.index}")

    async def _submit(self, part: SubmitPart) -> PartResult:
        throttled = resent = 0
        while True:
            try:
                resp = await self.bind.submit(part.fields, part.tlvs)
            except ResponseTimeout:
                self._possible_duplicate()
                resent += 1
                if resent > RESEND_TRIES:
                    return PartResult(part.index, error="timeout", transient=True)
                continue
            except Disconnected as exc:
                if not isinstance(exc, NotBound):
                    self._possible_duplicate()
                resent += 1
                if resent > RESEND_TRIES or not await self.bind.wait_bound(self.rebind_wait):
                    return PartResult(part.index, disconnected=True, error="disconnected")
                continue
            if resp.status == 0:
                raw = resp.text("message_id")
                pid = normalise(raw, self.cfg.id_format)
                self.ids.put(pid, raw)
                return PartResult(part.index, provider_id=pid)
            if resp.status in THROTTLE:
                throttled += 1
                if throttled <= THROTTLE_TRIES:
                    continue  # the bucket now runs at half rate: this is the backoff
            return PartResult(part.index, status=resp.status)

    def _possible_duplicate(self) -> None:
        self.duplicates += 1
        self.metrics.duplicates.labels(self.bind.id).inc()

    def _failed(
        self, job: SendJob, ok: list[PartRef], code: str, error: str, retryable: bool
    ) -> StatusEvent:
        return StatusEvent(
            message_id=job.message_id,
            state="failed",
            route=self.bind.route,
            parts=ok,
            recipient=job.to,
            error_code=code,
            error=error,
            retryable=retryable,
            job_id=job.job_id,
        )

    async def _publish(self, event: StatusEvent) -> None:
        key = self.topology.status_key(event.state)
        for attempt in range(PUBLISH_TRIES):
            try:
                await self.events.publish(Outgoing(self.topology.events_exchange, key, event))
                return
            except PublishError as exc:
                log.warning("status event not confirmed (%s), attempt %d", exc, attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        # The outcome is remembered (`_done`): a redelivery publishes it without resending.
        raise Requeue("status event not confirmed by the broker")

    def _remember(self, job_id: str, event: StatusEvent) -> None:
        self._done[job_id] = event
        if len(self._done) > 50_000:
            self._done.popitem(last=False)

    def _count(self, outcome: str) -> None:
        counter = self._m_jobs.get(outcome)
        if counter is None:
            counter = self._m_jobs[outcome] = self.metrics.jobs.labels(self.bind.id, outcome)
        counter.inc()
        # Per job, so DEBUG; the line carries the job's message_id (set by `handle`).
        log.debug("job %s", outcome, extra={"bind": self.bind.id})
