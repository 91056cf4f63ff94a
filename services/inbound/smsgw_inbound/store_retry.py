"""Store errors: which ones go away by themselves, and applying a batch until it sticks.

While the store is unreachable a batch is retried here, in place, with backoff: the messages
stay unacked (bounded by the prefetch) instead of being requeued, which would spend the
quorum queue's delivery limit and dead-letter events during a database outage. An item that
fails on its own is failed alone, never the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from smsgw_inbound import metrics
from smsgw_shared.backoff import Backoff, pause

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# SQLSTATE classes worth retrying: connection (08), transaction rollback incl. deadlock (40),
# insufficient resources (53), operator intervention such as admin shutdown (57).
TRANSIENT_SQLSTATE = ("08", "40", "53", "57")
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0


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


async def apply_retrying(
    apply: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
    items: Sequence[T],
    name: str,
    max_backoff: float = MAX_BACKOFF_S,
) -> list[R | Exception]:
    """`apply(items)`, retried while the store is unreachable; one result per item, or the
    exception of an item that fails on its own (the rest of its batch is applied)."""
    backoff = Backoff(FIRST_BACKOFF_S, max(FIRST_BACKOFF_S, max_backoff))
    while True:
        try:
            results = await apply(items)
        except Exception as exc:
            if is_transient(exc):
                delay = backoff.next()
                log.warning("%s: store error, retrying in %.1fs: %r", name, delay, exc)
                await pause(delay)
                continue
            if len(items) == 1:
                return [exc]
            log.warning("%s: batch of %d failed (%r); applying one by one", name, len(items), exc)
            out: list[R | Exception] = []
            for item in items:
                out.extend(await apply_retrying(apply, [item], name, max_backoff))
            return out
        metrics.BATCH_SIZE.observe(len(items))
        return list(results)
