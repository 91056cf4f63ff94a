"""One tail of the event log per API process, feeding every live subscriber.

Every SSE, WebSocket and compat stream of a process reads from here: one database poll
every `interval` for all of them (a subscriber costs a filter in Python per event, not a
query per poll). The hub keeps the last `buffer` events it handed out, in the order they
became visible.

Ids come from a sequence, so a transaction that took a lower id may commit after one with
a higher id. The hub hands out each event once, as soon as it is visible, and keeps its
resume point (`position`: every id <= it has been handled) below ids still missing until
`GAP_TIMEOUT` (a rolled-back id never appears).

A subscriber that resumes (`Last-Event-ID`, `?since=`) first reads what it missed up to the
hub's position from the store, with its own filter, then what the hub handed out above
that position, then follows the hub live: nothing twice, nothing missed.

Limits: `max_per_key` subscribers per key and `max_streams` in all (`TooManyStreams`); a
subscriber whose key is revoked ends within the key cache's TTL; one that falls more than
`buffer` events behind ends (its client reconnects with `Last-Event-ID` and catches up
from the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from smsgw_api.auth import CACHE_TTL, KeyCache
from smsgw_api.deps import AppState
from smsgw_shared.store.repos.event_log import EventLogRepository, LoggedEvent, StreamFilter
from smsgw_shared.store.repos.keys import ApiKey

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.25  # seconds between reads of the event log
GAP_TIMEOUT = 5.0  # seconds to wait for a missing id before moving past it
READ_BATCH = 1000
BUFFER = 10_000  # events kept for subscribers a little behind
IDLE_STOP = 30.0  # seconds without subscribers before the tail stops polling
QUIET_TICK = 1.0  # a subscriber gets an empty batch after this long without events


class TooManyStreams(Exception):
    """The key (or the process) has as many live streams as it may."""


class GapTracker:
    """Which ids have been handled: `position` (all ids <= it) plus those seen above it."""

    def __init__(self, position: int) -> None:
        self.position = position
        self._seen: set[int] = set()
        self._gaps: dict[int, float] = {}  # missing id → first noticed (monotonic)

    def accept(self, rows: list[LoggedEvent]) -> list[LoggedEvent]:
        """The rows not handled before (now handled), and advance `position`."""
        fresh = [r for r in rows if r.id > self.position and r.id not in self._seen]
        for r in fresh:
            self._seen.add(r.id)
        now = time.monotonic()
        top = max(self._seen, default=self.position)
        for i in range(self.position + 1, top):
            if i not in self._seen:
                self._gaps.setdefault(i, now)
        while True:
            nxt = self.position + 1
            if nxt in self._seen:
                self._seen.discard(nxt)
            elif nxt in self._gaps and now - self._gaps[nxt] > GAP_TIMEOUT:
                log.debug("event id %d never became visible; moving past it", nxt)
            else:
                break
            self._gaps.pop(nxt, None)
            self.position = nxt
        return fresh


@dataclass
class Subscription:
    """One live stream's place in the hub: `start` it, then `follow` its events."""

    hub: EventHub
    key: ApiKey
    flt: StreamFilter
    closed: bool = False
    _start: _Start | None = field(default=None, repr=False)

    async def start(self, after: int | None = None) -> None:
        """Take the stream's place in the tail: every event visible after this returns is
        delivered (a client told "connected" after it misses nothing). `after`: an event
        id to resume after (None: from now on)."""
        if self._start is None:
            self._start = await self.hub._start(self.flt, after)

    async def follow(self, after: int | None = None) -> AsyncIterator[list[LoggedEvent]]:
        """Batches of events (an empty one after each quiet second) until the key is
        revoked, the subscriber falls too far behind, or the caller stops."""
        try:
            await self.start(after)
            assert self._start is not None
            async for batch in self.hub._follow(self, self._start):
                yield batch
        finally:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._release(self)

    def __del__(self) -> None:
        # A response that never started its body (client gone first) still frees its place.
        self.close()


@dataclass
class _Start:
    """Where a subscription begins: the tail's sequence number of its first live event,
    ids it must not get again, and what it missed (read from the store up to `position`,
    then `handed`, the events the tail handed out above `position`)."""

    cursor: int
    skip_upto: int
    after: int | None
    position: int
    handed: list[LoggedEvent]


class EventHub:
    """The shared tail (see the module's docstring)."""

    def __init__(
        self,
        repo: EventLogRepository,
        keys: KeyCache,
        *,
        max_streams: int = 1000,
        max_per_key: int = 10,
        interval: float = POLL_INTERVAL,
        buffer: int = BUFFER,
        recheck: float = CACHE_TTL,
    ) -> None:
        self.repo = repo
        self.keys = keys
        self.max_streams = max_streams
        self.max_per_key = max_per_key
        self.interval = interval
        self.buffer = buffer
        self.recheck = recheck
        self._events: list[LoggedEvent] = []
        self._base = 0  # sequence number of self._events[0]
        self._tracker = GapTracker(0)
        self._per_key: dict[uuid.UUID, int] = {}
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.polls = 0  # store reads made by the tail (tests count them)

    # -- subscribers ------------------------------------------------------------------
    def subscribe(self, key: ApiKey, flt: StreamFilter) -> Subscription:
        """A place for one stream, or `TooManyStreams` (checked before a response starts)."""
        if self._per_key.get(key.id, 0) >= self.max_per_key:
            raise TooManyStreams(
                f"this key has {self.max_per_key} live streams open already (the limit)"
            )
        if self._count >= self.max_streams:
            raise TooManyStreams(f"this server has {self.max_streams} live streams open")
        self._per_key[key.id] = self._per_key.get(key.id, 0) + 1
        self._count += 1
        return Subscription(self, key, flt)

    def _release(self, sub: Subscription) -> None:
        n = self._per_key.get(sub.key.id, 0) - 1
        if n > 0:
            self._per_key[sub.key.id] = n
        else:
            self._per_key.pop(sub.key.id, None)
        self._count -= 1

    @property
    def streams(self) -> int:
        return self._count

    @property
    def _end(self) -> int:
        return self._base + len(self._events)

    async def _start(self, flt: StreamFilter, after: int | None) -> _Start:
        await self._ensure_running()
        # Synchronously from here: the tail's position, what it handed out above it, and
        # where live events start.
        position = self._tracker.position
        if after is None:
            return _Start(self._end, 0, None, position, [])
        skip_upto = max(after, position)
        handed = [e for e in self._events if e.id > skip_upto and flt.matches(e)]
        return _Start(self._end, skip_upto, after, position, handed)

    async def _follow(self, sub: Subscription, start: _Start) -> AsyncIterator[list[LoggedEvent]]:
        flt = sub.flt
        cursor, skip_upto = start.cursor, start.skip_upto
        if start.after is not None:
            pos = start.after
            while pos < start.position:
                rows = await self.repo.read_after(pos, flt, READ_BATCH, until=start.position)
                if not rows:
                    break
                pos = rows[-1].id
                batch = [r for r in rows if r.payload is not None]
                if batch:
                    yield batch
            if start.handed:
                yield start.handed
        checked = time.monotonic()
        while True:
            if time.monotonic() - checked >= self.recheck:
                checked = time.monotonic()
                if not await self.keys.is_active(sub.key):
                    log.info("stream of key %s ended: the key was revoked", sub.key.name)
                    return
            if cursor < self._base:
                log.info(
                    "stream of key %s ended: more than %d events behind", sub.key.name, self.buffer
                )
                return
            wake = self._wake
            if cursor < self._end:
                events = self._events[cursor - self._base :]
                cursor = self._end
                out = [e for e in events if e.id > skip_upto and flt.matches(e)]
                if out:
                    yield out
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), QUIET_TICK)
                continue
            yield []

    # -- the tail ---------------------------------------------------------------------
    async def _ensure_running(self) -> None:
        async with self._lock:
            if self._task is not None and not self._task.done():
                return
            self._events = []
            self._base = 0
            self._tracker = GapTracker(await self.repo.last_id())
            self._task = asyncio.create_task(self._run(), name="event-hub")

    async def _run(self) -> None:
        idle_since: float | None = None
        while True:
            try:
                rows = await self.repo.read_all_after(self._tracker.position, READ_BATCH)
                self.polls += 1
            except Exception as exc:
                log.warning("event log not readable: %r", exc)
                await asyncio.sleep(max(self.interval, 1.0))
                continue
            fresh = self._tracker.accept(rows)
            if fresh:
                self._events.extend(fresh)
                if len(self._events) > self.buffer:
                    drop = len(self._events) - self.buffer
                    del self._events[:drop]
                    self._base += drop
                self._wake.set()
                self._wake = asyncio.Event()
            if self._count == 0:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > IDLE_STOP:
                    self._task = None
                    return
            else:
                idle_since = None
            if len(rows) < READ_BATCH:
                await asyncio.sleep(self.interval)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def hub_for(state: AppState) -> EventHub:
    """The process's hub (made on first use, closed with the app)."""
    hub: EventHub | None = state.extras.get("event_hub")
    if hub is None:
        hub = EventHub(
            EventLogRepository(state.engine),
            state.key_cache,
            max_streams=state.settings.api.max_streams,
            max_per_key=state.settings.api.max_streams_per_key,
            recheck=state.settings.api.key_cache_ttl,
        )
        state.extras["event_hub"] = hub
        state.extras.setdefault("on_shutdown", []).append(hub.close)
    return hub
