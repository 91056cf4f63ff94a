"""The accept path's plumbing: group commit to the store and pipelined publishing.

Concurrent requests hand their rows to one `GroupCommitter`, which writes everything that
arrived within a couple of milliseconds in a single transaction (one round trip instead of
one per request). After the commit each job is published with confirms by the
`JobDispatcher`; confirmed jobs leave the outbox, the others stay there for the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import Counter

from smsgw_api.services.in_doubt import HOLD_S, IN_DOUBT, InDoubt, PublishInDoubt
from smsgw_api.services.jobs import stored_job
from smsgw_shared.amqp import Outgoing, Publisher
from smsgw_shared.runtime import stop_tasks
from smsgw_shared.store.direct import DirectConnection
from smsgw_shared.store.repos.messages import MessageRepository, NewMessages, OutboxRow

log = logging.getLogger(__name__)

# How long the hot path has to publish a job before the relay considers it its own.
HOT_PATH_GRACE_S = 30
# How long one publish of a batch may wait for its confirms.
PUBLISH_TIMEOUT_S = 15.0
# A job still waiting in the dispatcher's queue this long after its commit is left to the
# relay: published now it could still be unconfirmed when its grace runs out, and the relay
# would send a second copy (one publisher works through a full backlog batch by batch).
MAX_QUEUED_S = HOT_PATH_GRACE_S - PUBLISH_TIMEOUT_S - 5

HANDED_TO_RELAY = Counter(
    "smsgw_api_jobs_handed_to_relay_total",
    "Jobs the API left to the outbox relay: accepted while its publisher had no room, or "
    "queued too long to be published in time (broker stalled)",
)


@dataclass
class _Pending:
    group: NewMessages
    future: asyncio.Future[list[int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitter:
    """Batches inserts from concurrent requests into one transaction."""

    def __init__(self, repo: MessageRepository, max_rows: int = 5000, writers: int = 3) -> None:
        self.repo = repo
        self._connections: list[DirectConnection] = []
        self.max_rows = max_rows
        # A few commits in flight at once: while one waits for its fsync the next batch fills.
        self.writers = writers
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        # Each writer has a connection of its own, outside SQLAlchemy's pool.
        self._connections = [self.repo.direct() for _ in range(self.writers)]
        self._tasks = [
            asyncio.create_task(self._loop(conn), name=f"group-commit-{i}")
            for i, conn in enumerate(self._connections)
        ]

    async def submit(self, group: NewMessages) -> list[int]:
        """Store one request's messages and jobs; returns the outbox ids once committed."""
        item = _Pending(group)
        self._queue.put_nowait(item)
        return await item.future

    async def _loop(self, conn: DirectConnection) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            count = len(first.group.ids)
            while count < self.max_rows and not self._queue.empty():
                nxt = self._queue.get_nowait()
                batch.append(nxt)
                count += len(nxt.group.ids)
            await self._commit(conn, batch)

    async def _commit(self, conn: DirectConnection, batch: list[_Pending]) -> None:
        try:
            ids = await self.repo.accept(conn, [p.group for p in batch])
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
                return
            # The statement refused a value of one request (the connection is fine):
            # commit each alone, so only that request fails, not the ones with it.
            for p in batch:
                await self._commit(conn, [p])
            return
        except Exception as exc:
            self._fail(batch, exc)
            return
        pos = 0
        for p in batch:
            n = p.group.jobs
            if not p.future.done():
                p.future.set_result(ids[pos : pos + n])
            pos += n

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(exc)

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        for conn in self._connections:
            await conn.close()


class JobDispatcher:
    """Publishes committed jobs with confirms and clears them from the outbox.

    Jobs go out in batches (one write, confirms awaited together). One publisher by
    default: while its batch waits for confirms and the outbox delete, the next one grows,
    and fewer, bigger batches cost the broker and this process less per job than several
    publishers' smaller ones (`publishers` below).
    The backlog is bounded: `reserve` makes a request wait (up to `wait` seconds) while
    `limit` jobs are already queued or in flight, so under sustained load requests are
    accepted as fast as jobs are published, not faster; what is accepted while the broker
    stalls is handed to the relay instead (`reserve` says False). A bounded backlog also
    keeps every job published well inside `HOT_PATH_GRACE_S`, after which the relay would
    take it for its own and a second copy would go out.
    """

    def __init__(
        self,
        repo: MessageRepository,
        publisher: Publisher,
        chunk: int = 1000,
        # bench_e2e, alternated pairs: single sends 4 → 1 publisher: RabbitMQ 150 → 114-124 µs
        # and the API 248-252 → 216-236 µs a message, full loop +7.5%; 2 → 1 +2-6%; batches
        # of 1,000 recipients accepted 12.7-13.8k/s with 4, 15.5-17.9k with 2, 20.6k with 1.
        # (bench_api, the API alone, once measured 4 a little ahead of 2 for batches.)
        publishers: int = 1,
        limit: int = 10_000,
        wait: float = 2.0,
        in_doubt: InDoubt | None = None,
    ) -> None:
        self.repo = repo
        self.publisher = publisher
        # Timed-out publishes go on there, their rows held until the broker answers.
        self.in_doubt = in_doubt if in_doubt is not None else InDoubt(repo)
        self.chunk = chunk
        self.limit = limit
        self.wait = wait
        self.max_queued = MAX_QUEUED_S
        self.publish_timeout = PUBLISH_TIMEOUT_S
        # (outbox id, job, loop time it was queued)
        self._queue: asyncio.Queue[tuple[int, Outgoing, float]] = asyncio.Queue()
        self._backlog = 0  # reserved: queued, in flight, or about to be committed
        self._room = asyncio.Event()
        self._room.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._conns = [repo.direct_for_deletes() for _ in range(publishers)]

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(conn), name=f"job-dispatch-{i}")
            for i, conn in enumerate(self._conns)
        ]

    async def reserve(self, n: int) -> bool:
        """Room for `n` jobs: True once there is (the caller then `enqueue`s them or
        `release`s the room), False if none came within `wait` seconds (the caller leaves
        the jobs to the relay). A request bigger than `limit` waits for an empty backlog."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while self._backlog and self._backlog + n > self.limit:
            self._room.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._room.wait()
            except TimeoutError:
                return False
        self._backlog += n
        return True

    def release(self, n: int) -> None:
        """Give back room that was reserved and will not be used (or has been published)."""
        self._backlog = max(0, self._backlog - n)
        if self._backlog < self.limit:
            self._room.set()

    def enqueue(self, items: Sequence[tuple[int, Outgoing]]) -> None:
        """Publish these committed jobs (their room reserved by `reserve`)."""
        now = asyncio.get_running_loop().time()
        for oid, job in items:
            self._queue.put_nowait((oid, job, now))

    async def _loop(self, conn: DirectConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.chunk and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                oldest = loop.time() - self.max_queued
                fresh: list[tuple[int, Outgoing]] = []
                late: list[int] = []
                for oid, job, at in batch:
                    if at >= oldest:
                        fresh.append((oid, job))
                    else:
                        late.append(oid)
                if fresh:
                    await self._publish(conn, fresh)
                if late:
                    await self._leave_to_relay(late)
            except Exception:
                # The jobs are in the outbox: the relay publishes them later.
                log.exception("dispatch failed; the outbox relay will retry")
            finally:
                self.release(len(batch))
                for _ in batch:
                    self._queue.task_done()

    async def _publish(self, conn: DirectConnection, batch: list[tuple[int, Outgoing]]) -> None:
        errors = await self.in_doubt.publish(
            self.publisher, [oid for oid, _ in batch], [o for _, o in batch], self.publish_timeout
        )
        done = [oid for (oid, _), err in zip(batch, errors, strict=True) if err is None]
        # Rows in doubt stay held (`in_doubt` settles them); other failures go to the relay.
        failed = [
            (oid, err)
            for (oid, _), err in zip(batch, errors, strict=True)
            if err is not None and not isinstance(err, PublishInDoubt)
        ]
        await self.repo.delete_outbox(conn, done)
        if failed:
            log.warning("publish failed for %d job(s): %s", len(failed), failed[0][1])
            await self.repo.release_outbox([oid for oid, _ in failed], str(failed[0][1]))
        elif len(done) < len(batch):
            log.warning("publish of %d job(s) in doubt: held", len(batch) - len(done))

    async def _leave_to_relay(self, ids: list[int]) -> None:
        """Jobs queued too long (the publishes ahead of them stalled): not published here,
        where they could race the relay for them, but made due for it now."""
        log.warning(
            "%d job(s) queued over %.0fs left to the outbox relay", len(ids), self.max_queued
        )
        HANDED_TO_RELAY.inc(len(ids))
        await self.repo.release_outbox(ids, f"queued over {self.max_queued:.0f}s in the API")

    @property
    def waiting(self) -> int:
        """Jobs queued and not yet taken for a publish."""
        return self._queue.qsize()

    @property
    def backlog(self) -> int:
        """Jobs committed (or about to be) and not yet published."""
        return self._backlog

    async def stop(self, drain_timeout: float = 5.0) -> int:
        """Publish what is queued (bounded), then stop; leftovers stay in the outbox (the
        relay publishes them: those never taken from the queue at once, those caught in a
        publish after their grace). Returns how many jobs were left unpublished."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                await self._queue.join()
        left = self._backlog
        untaken = []
        while not self._queue.empty():
            untaken.append(self._queue.get_nowait()[0])
            self._queue.task_done()
        await stop_tasks(self._tasks)
        for conn in self._conns:
            await conn.close()
        if untaken:
            # Due for the relay now, in whichever API process runs it, rather than at the
            # end of their grace (no publish of theirs was begun: no second copy).
            try:
                async with asyncio.timeout(2):
                    await self.repo.release_outbox(untaken, "the API stopped before publishing it")
            except Exception as exc:
                log.warning("stop: %d unpublished job(s) keep their grace: %r", len(untaken), exc)
        return left


class OutboxRelay:
    """Publishes what the hot path could not (broker down, crash) and scheduled sends."""

    publish_timeout: float = PUBLISH_TIMEOUT_S

    def __init__(
        self,
        repo: MessageRepository,
        publisher: Publisher,
        interval: float = 1.0,
        in_doubt: InDoubt | None = None,
    ) -> None:
        self.repo = repo
        self.publisher = publisher
        self.interval = interval
        self.in_doubt = in_doubt if in_doubt is not None else InDoubt(repo)
        self._task: asyncio.Task[None] | None = None

    def start(self, after: asyncio.Event | None = None) -> None:
        """Relay every `interval`, from when `after` is set (the broker's topology is
        declared: the outbox may hold jobs for exchanges that do not exist yet)."""
        self._task = asyncio.create_task(self._loop(after), name="outbox-relay")

    async def _publish_rows(self, rows: list[OutboxRow]) -> list[str | None]:
        """Publish what the rows owe; each row's error, or None once confirmed (or once
        found not to be owed any more). Rows whose publish timed out are held (by
        `relay_batch`, in its transaction: see `_hold`) until `in_doubt` settles them."""
        todo: list[int] = []
        items: list[Outgoing] = []
        errors: list[str | None] = [None] * len(rows)
        for i, r in enumerate(rows):
            body = r.body.encode() if r.body is not None else self._stored_body(r)
            if body is not None:
                todo.append(i)
                items.append(Outgoing(r.exchange, r.routing_key, body))
        if not items:
            return errors
        results = await self.in_doubt.publish(
            self.publisher, [rows[i].id for i in todo], items, self.publish_timeout, hold=False
        )
        for i, err in zip(todo, results, strict=True):
            errors[i] = None if err is None else str(err)
        return errors

    @staticmethod
    def _hold(error: str) -> float | None:
        """How long `relay_batch` holds a row that failed with `error` (None: its backoff)."""
        return HOLD_S if error == IN_DOUBT else None

    @staticmethod
    def _stored_body(row: OutboxRow) -> bytes | None:
        """The job of a body-less row, made from its message; None when the message no
        longer needs it (canceled, expired, or already taken by a worker) or is gone."""
        msg = row.message
        if msg is None or msg["status"] != "queued":
            log.info(
                "outbox: job of message %s not sent (message %s)",
                row.message_id,
                "gone" if msg is None else msg["status"],
            )
            return None
        return stored_job(msg).to_bytes()

    async def run_once(self) -> int:
        """Relay every due row; returns how many were published. A row that fails stays,
        with its error and a later due time, and does not hold back the rows after it."""
        total = 0
        while True:
            n, errors = await self.repo.relay_batch(500, self._publish_rows, self._hold)
            total += n
            if errors:
                log.warning(
                    "outbox relay: %d job(s) not published, kept for later: %s",
                    len(errors),
                    errors[0],
                )
            # On when the batch was full and went out; when nothing did (broker down),
            # the rest waits for the next pass instead of being read and pushed back now.
            if n + len(errors) < 500 or n == 0:
                return total

    async def _loop(self, after: asyncio.Event | None) -> None:
        if after is not None:
            await after.wait()
        while True:
            try:
                n = await self.run_once()
                if n:
                    log.info("outbox relay published %d job(s)", n)
            except Exception as exc:
                log.warning("outbox relay: %r", exc)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        await stop_tasks([self._task])
