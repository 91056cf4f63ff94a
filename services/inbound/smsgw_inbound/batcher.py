"""Group concurrent handler calls into one store transaction.

Each consumer handler submits its item and waits; a single loop applies whatever has
accumulated (up to `max_size`) in one call and resolves every waiter after the commit, so the
broker acks only what the store has. While the store is unreachable the batch is retried
with backoff (the messages stay unacked, bounded by the prefetch); an item that fails on its
own is failed alone, never the whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from smsgw_inbound import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# SQLSTATE classes worth retrying: connection (08), transaction rollback incl. deadlock (40),
# insufficient resources (53), operator intervention such as admin shutdown (57).
TRANSIENT_SQLSTATE = ("08", "40", "53", "57")


def is_transient(exc: BaseException) -> bool:
    """Whether a store error will likely go away by itself (retry) or not (fail the item)."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | OSError | TimeoutError):
        return True
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = str(getattr(exc.orig, "sqlstate", "") or getattr(exc.orig, "pgcode", "") or "")
        return state.startswith(TRANSIENT_SQLSTATE)
    return False


class Batcher(Generic[T, R]):
    """Runs `apply(items) -> results` on batches of submitted items."""

    def __init__(
        self,
        apply: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        max_size: int = 500,
        name: str = "batcher",
        max_backoff: float = 5.0,
    ) -> None:
        self._apply = apply
        self.max_size = max_size
        self.name = name
        self.max_backoff = max_backoff
        self._items: list[tuple[T, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue `item`; returns its result once its batch is committed."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, fut))
        self._wake.set()
        return await fut

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop the loop; waiters still queued get CancelledError (their messages requeue)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, fut in self._items:
            if not fut.done():
                fut.cancel()
        self._items.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._items:
                batch = self._items[: self.max_size]
                del self._items[: len(batch)]
                await self._process(batch)

    async def _process(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        live = [(item, fut) for item, fut in batch if not fut.done()]
        if not live:
            return
        delay = 0.1
        while True:
            try:
                results = await self._apply([item for item, _ in live])
            except Exception as exc:
                if is_transient(exc):
                    log.warning("%s: store error, retrying in %.1fs: %r", self.name, delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
                if len(live) == 1:
                    _settle(live[0][1], exc=exc)
                    return
                log.warning(
                    "%s: batch of %d failed (%r); applying one by one", self.name, len(live), exc
                )
                for one in live:
                    await self._process([one])
                return
            metrics.BATCH_SIZE.observe(len(live))
            for (_, fut), res in zip(live, results, strict=True):
                _settle(fut, result=res)
            return


def _settle(
    fut: asyncio.Future[R], result: R | None = None, exc: BaseException | None = None
) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)  # type: ignore[arg-type]
