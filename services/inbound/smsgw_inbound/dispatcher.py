"""Webhook delivery: due deliveries are claimed from the store and POSTed, signed.

- Several inbound processes may run: claims use FOR UPDATE SKIP LOCKED and lease each
  delivery (its next attempt moves ahead) so a crashed process's work comes back later.
- Each endpoint (URL) has its own concurrency limit and a bounded local queue; an endpoint
  whose queue is full is left out of the next claim, which goes URL by URL (an index per
  URL), so its backlog is not even read. A slow or dead endpoint therefore only ever
  occupies its own slots and never delays the others.
- So has each host (all its URLs: many subscriptions or status callbacks on one host are
  one target), and the process as a whole (`webhooks.concurrency_per_host`,
  `concurrency_total`): a delivery takes a slot of its endpoint, then of its host, then a
  global one. A host whose queue is full is left out of the claim too, and the claim takes
  no more than the global queue has room for.
- Endpoints and hosts with nothing in hand are forgotten at once (status callbacks make
  one endpoint per URL: the map would otherwise grow with every URL ever called).
- A failed attempt (timeout, connection error, non-2xx, redirect) is retried after the next
  delay of `webhooks.retry_schedule` (±20 % jitter); after the last one the delivery is
  `dead`. Every attempt is recorded (batched writes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp

from smsgw_inbound import metrics
from smsgw_inbound.signing import headers
from smsgw_inbound.store_retry import is_transient
from smsgw_shared.config import WebhooksConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.webhooks import (
    AttemptResult,
    ClaimedDelivery,
    WebhookRepository,
    host_key,
)
from smsgw_shared.urlguard import GuardedResolver, UrlRefused, check_target

log = logging.getLogger(__name__)

CLAIM_LIMIT = 500
QUEUE_PER_SLOT = 8  # deliveries claimed ahead per concurrency slot of an endpoint
JITTER = 0.2
RESPONSE_READ_LIMIT = 65536


def payload_message_id(payload: str) -> str | None:
    """The message a webhook body is about (`data.message_id` of `message.status`), for the
    log lines that follow one message through every service."""
    try:
        data = json.loads(payload).get("data")
    except (ValueError, AttributeError):
        return None
    mid = data.get("message_id") if isinstance(data, dict) else None
    return mid if isinstance(mid, str) else None


@dataclass
class Endpoint:
    """Local state of one URL or host: its slots and what is claimed for it."""

    slots: asyncio.Semaphore
    queued: int = 0  # claimed, not finished


@dataclass
class Dispatcher:
    """Claims due deliveries and makes the HTTP attempts."""

    repo: WebhookRepository
    cfg: WebhooksConfig
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # by URL
    hosts: dict[str, Endpoint] = field(default_factory=dict)  # by host_key(URL)
    queued: int = 0  # claimed, not finished, in all
    _results: list[AttemptResult] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _flushed: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _session: aiohttp.ClientSession | None = None
    _all: asyncio.Semaphore | None = None

    @property
    def queue_limit(self) -> int:
        return self.cfg.concurrency_per_endpoint * QUEUE_PER_SLOT

    @property
    def host_queue_limit(self) -> int:
        return self.cfg.concurrency_per_host * QUEUE_PER_SLOT

    @property
    def total_queue_limit(self) -> int:
        return self.cfg.concurrency_total * QUEUE_PER_SLOT

    @property
    def lease(self) -> float:
        """How long a claim is ours: long enough for the local queues to drain. Each queue
        holds QUEUE_PER_SLOT attempts per slot; a delivery may wait its turn at its
        endpoint, its host and the global slots, hence the factor 3 (a lease that runs out
        only means the delivery may be made twice: deliveries are at-least-once)."""
        return self.cfg.timeout * (3 * QUEUE_PER_SLOT + 1) + 30.0

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
        total_room = self.total_queue_limit - self.queued
        if total_room <= 0:
            return []
        room = {u: self.queue_limit - ep.queued for u, ep in self.endpoints.items()}
        host_room = {h: self.host_queue_limit - hs.queued for h, hs in self.hosts.items()}
        try:
            claimed = await self.repo.claim(
                min(CLAIM_LIMIT, total_room),
                room,
                self.queue_limit,
                self.lease,
                self.cfg.previous_secret_ttl,
                host_room,
                self.host_queue_limit,
            )
        except Exception as exc:
            if not is_transient(exc):
                log.exception("claiming webhook deliveries failed")
            else:
                log.warning("claiming webhook deliveries failed: %r", exc)
            return []
        if self._all is None:
            self._all = asyncio.Semaphore(self.cfg.concurrency_total)
        for d in claimed:
            ep = self.endpoints.get(d.url)
            if ep is None:
                ep = self.endpoints[d.url] = Endpoint(
                    asyncio.Semaphore(self.cfg.concurrency_per_endpoint)
                )
            host = self.hosts.get(hk := host_key(d.url))
            if host is None:
                host = self.hosts[hk] = Endpoint(asyncio.Semaphore(self.cfg.concurrency_per_host))
            ep.queued += 1
            host.queued += 1
            self.queued += 1
            task = asyncio.create_task(self._deliver(ep, host, self._all, d))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return claimed

    async def _deliver(
        self, ep: Endpoint, host: Endpoint, every: asyncio.Semaphore, d: ClaimedDelivery
    ) -> None:
        # Always taken in this order (endpoint, host, global): no deadlock; a global slot
        # is held only for the attempt itself, not while waiting for a host's turn.
        try:
            async with ep.slots, host.slots, every:
                result = await self.attempt(d)
        finally:
            self._finished(d.url, ep, host)
        self._results.append(result)

    def _finished(self, url: str, ep: Endpoint, host: Endpoint) -> None:
        """Count a delivery out; forget an endpoint or host with nothing left in hand (no
        task holds or waits on its slots then); wake the claim when a queue half-drains."""
        ep.queued -= 1
        host.queued -= 1
        self.queued -= 1
        if ep.queued == 0 and self.endpoints.get(url) is ep:
            del self.endpoints[url]
        hk = host_key(url)
        if host.queued == 0 and self.hosts.get(hk) is host:
            del self.hosts[hk]
        if (
            ep.queued == self.queue_limit // 2
            or host.queued == self.host_queue_limit // 2
            or self.queued == self.total_queue_limit // 2
        ):
            self._room.set()

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
            check_target(d.url, self.cfg.allow_private)  # syntax; IP literals skip the resolver
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
                extra={
                    "delivery_id": str(d.id),
                    "url": d.url,
                    "error": error,
                    "message_id": payload_message_id(d.payload),
                },
            )
        elif log.isEnabledFor(logging.DEBUG):  # per delivery attempt: DEBUG
            log.debug(
                "webhook delivery %s",
                outcome,
                extra={
                    "delivery_id": str(d.id),
                    "event_type": d.event_type,
                    "url": d.url,
                    "status_code": code,
                    "error": error,
                    "message_id": payload_message_id(d.payload),
                },
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
