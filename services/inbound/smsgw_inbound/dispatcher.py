"""Webhook delivery: due deliveries are claimed from the store and POSTed, signed.

- Several inbound processes may run: claims use FOR UPDATE SKIP LOCKED and lease each
  delivery (its next attempt moves ahead) so a crashed process's work comes back later.
- Each endpoint (URL) has its own concurrency limit and a bounded local queue; an endpoint
  whose queue is full is left out of the next claim, which goes URL by URL (an index per
  URL), so its backlog is not even read. A slow or dead endpoint therefore only ever
  occupies its own slots and never delays the others.
- A failed attempt (timeout, connection error, non-2xx, redirect) is retried after the next
  delay of `webhooks.retry_schedule` (±20 % jitter); after the last one the delivery is
  `dead`. Every attempt is recorded (batched writes).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp

from smsgw_inbound import metrics
from smsgw_inbound.signing import headers
from smsgw_inbound.store_retry import is_transient
from smsgw_shared.config import WebhooksConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.webhooks import AttemptResult, ClaimedDelivery, WebhookRepository
from smsgw_shared.urlguard import GuardedResolver, UrlRefused, is_public, literal_address

log = logging.getLogger(__name__)

CLAIM_LIMIT = 500
QUEUE_PER_SLOT = 8  # deliveries claimed ahead per concurrency slot of an endpoint
JITTER = 0.2
RESPONSE_READ_LIMIT = 65536


@dataclass
class Endpoint:
    """Local state of one URL."""

    slots: asyncio.Semaphore
    queued: int = 0  # claimed, not finished


@dataclass
class Dispatcher:
    """Claims due deliveries and makes the HTTP attempts."""

    repo: WebhookRepository
    cfg: WebhooksConfig
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    _results: list[AttemptResult] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _flushed: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _session: aiohttp.ClientSession | None = None

    @property
    def queue_limit(self) -> int:
        return self.cfg.concurrency_per_endpoint * QUEUE_PER_SLOT

    @property
    def lease(self) -> float:
        """How long a claim is ours: long enough for the whole local queue to drain."""
        return self.cfg.timeout * (QUEUE_PER_SLOT + 1) + 30.0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, then finish attempts in hand and record them."""
        connector = aiohttp.TCPConnector(
            limit=0, resolver=GuardedResolver(self.cfg.allow_private), ttl_dns_cache=10
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout),
            auto_decompress=False,
        )
        flusher = asyncio.create_task(self._flush_loop(stop), name="webhook-flush")
        try:
            while not stop.is_set():
                self._room.clear()
                claimed = await self._claim()
                if len(claimed) >= CLAIM_LIMIT:
                    continue
                # Claim again at the next poll, or as soon as an endpoint's queue half-drains.
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._room.wait()),
                ]
                await asyncio.wait(
                    waits, timeout=self.cfg.poll_interval, return_when="FIRST_COMPLETED"
                )
                for f in waits:
                    f.cancel()
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self.cfg.timeout + 1)
            for t in self._tasks:
                t.cancel()
            stop.set()
            await flusher
            await self._session.close()

    async def _claim(self) -> list[ClaimedDelivery]:
        room = {u: self.queue_limit - ep.queued for u, ep in self.endpoints.items()}
        try:
            claimed = await self.repo.claim(
                CLAIM_LIMIT, room, self.queue_limit, self.lease, self.cfg.previous_secret_ttl
            )
        except Exception as exc:
            if not is_transient(exc):
                log.exception("claiming webhook deliveries failed")
            else:
                log.warning("claiming webhook deliveries failed: %r", exc)
            return []
        for d in claimed:
            ep = self.endpoints.get(d.url)
            if ep is None:
                ep = self.endpoints[d.url] = Endpoint(
                    asyncio.Semaphore(self.cfg.concurrency_per_endpoint)
                )
            ep.queued += 1
            task = asyncio.create_task(self._deliver(ep, d))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return claimed

    async def _deliver(self, ep: Endpoint, d: ClaimedDelivery) -> None:
        try:
            async with ep.slots:
                result = await self.attempt(d)
        finally:
            ep.queued -= 1
            if ep.queued == self.queue_limit // 2:
                self._room.set()
        self._results.append(result)

    async def attempt(self, d: ClaimedDelivery) -> AttemptResult:
        """One HTTP attempt of a delivery, and what to do next."""
        assert self._session is not None
        secrets = list(d.secrets)  # a status callback: its key's
        if d.webhook_id is None and not secrets and self.cfg.callback_secret:
            secrets = [self.cfg.callback_secret]  # a message stored without a key
        body = d.payload.encode()
        started = time.monotonic()
        attempted_at = utcnow()
        code: int | None = None
        error: str | None = None
        refused = False
        try:
            host = urlsplit(d.url).hostname or ""
            literal = literal_address(host)
            if literal is not None and not self.cfg.allow_private and not is_public(str(literal)):
                raise UrlRefused(f"the URL points to a non-public address ({literal})")
            async with self._session.post(
                d.url,
                data=body,
                headers=headers(secrets, d.event_id, int(time.time()), body),
                allow_redirects=False,
            ) as resp:
                code = resp.status
                await resp.content.read(RESPONSE_READ_LIMIT)
                if not 200 <= code < 300:
                    error = f"HTTP {code}"
        except UrlRefused as exc:
            refused, error = True, f"refused: {exc}"
        except TimeoutError:
            error = f"timeout after {self.cfg.timeout:g}s"
        except aiohttp.ClientError as exc:
            cause = exc.__cause__ or exc
            refused = isinstance(cause, UrlRefused)
            error = f"refused: {cause}" if refused else f"{type(exc).__name__}: {exc}"[:500]
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        elapsed = time.monotonic() - started
        metrics.WEBHOOK_LATENCY.observe(elapsed)
        return self._outcome(d, code, error, refused, elapsed, attempted_at)

    def _outcome(
        self,
        d: ClaimedDelivery,
        code: int | None,
        error: str | None,
        refused: bool,
        elapsed: float,
        attempted_at: datetime,
    ) -> AttemptResult:
        number = d.attempts + 1  # this attempt, 1-based
        schedule = self.cfg.retry_schedule
        next_at = None
        if error is None:
            status = outcome = "succeeded"
        elif refused or number > len(schedule):
            status, outcome = "dead", ("refused" if refused else "dead")
        else:
            status, outcome = "pending", "retry"
            delay = schedule[number - 1] * random.uniform(1 - JITTER, 1 + JITTER)
            next_at = utcnow() + timedelta(seconds=delay)
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        if status == "dead":
            log.warning(
                "webhook delivery dead-lettered",
                extra={"delivery_id": str(d.id), "url": d.url, "error": error},
            )
        return AttemptResult(
            delivery_id=d.id,
            status=status,
            status_code=code,
            error=error,
            duration_ms=int(elapsed * 1000),
            attempted_at=attempted_at,
            next_attempt_at=next_at,
        )

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        """Record attempt results in batches; keep them while the store is down."""
        while True:
            stopping = stop.is_set() and not self._tasks
            batch, self._results = self._results, []
            if batch:
                try:
                    await self.repo.record(batch)
                except Exception as exc:
                    log.warning("recording %d webhook attempts failed: %r", len(batch), exc)
                    self._results = batch + self._results
                    if stopping:
                        return
                    await asyncio.sleep(1.0)
                    continue
                self._flushed.set()
            if stopping and not self._results:
                return
            await asyncio.sleep(0.05)
