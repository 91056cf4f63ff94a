"""Store errors: which ones go away by themselves, and applying a batch until it sticks.

While the store is unreachable a batch is retried here, in place, with backoff: the messages
stay unacked (bounded by the prefetch) instead of being requeued, which would spend the
quorum queue's delivery limit and dead-letter events during a database outage.

A batch that keeps failing while the store answers (a statement that times out on one
locked row, a deadlock that comes back, a value the store refuses) is split in halves until
the event that fails on its own is found: the rest is applied, that one is failed alone
(the consumer retries it, then dead-letters it), with a log line naming it and
`smsgw_inbound_poison_isolated_total`.
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
    if isinstance(exc, asyncpg.PostgresError):
        # A statement run on the asyncpg connection itself (the projection's hot path):
        # not wrapped by SQLAlchemy, so its SQLSTATE is read here.
        return str(exc.sqlstate or "").startswith(TRANSIENT_SQLSTATE)
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = str(getattr(exc.orig, "sqlstate", "") or getattr(exc.orig, "pgcode", "") or "")
        return state.startswith(TRANSIENT_SQLSTATE)
    return False


BATCH_RETRIES = 3  # transient failures of one batch, while the store answers, before a split


def describe(item: object) -> str:
    """What a log line names an item by (its event and message ids when it has them)."""
    parts = [
        f"{attr}={getattr(item, attr)}"
        for attr in ("event_id", "message_id")
        if getattr(item, attr, None) is not None
    ]
    return " ".join(parts) or type(item).__name__


async def apply_retrying(
    apply: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
    items: Sequence[T],
    name: str,
    max_backoff: float = MAX_BACKOFF_S,
    store_answers: Callable[[], Awaitable[bool]] | None = None,
) -> list[R | Exception]:
    """`apply(items)`, retried while the store is unreachable; one result per item, or the
    exception of an item that fails on its own (the rest of its batch is applied).

    A transient error is retried in place; after `BATCH_RETRIES` of them in a row, if
    `store_answers()` says the store is fine, the batch is the problem and is split."""
    backoff = Backoff(FIRST_BACKOFF_S, max(FIRST_BACKOFF_S, max_backoff))
    failures = 0
    while True:
        try:
            results = await apply(items)
        except Exception as exc:
            if is_transient(exc):
                failures += 1
                if (
                    failures < BATCH_RETRIES
                    or store_answers is None
                    or not await _answers(store_answers)
                ):
                    delay = backoff.next()
                    log.warning("%s: store error, retrying in %.1fs: %r", name, delay, exc)
                    await pause(delay)
                    continue
            return await _split(apply, items, name, max_backoff, store_answers, exc)
        metrics.BATCH_SIZE.observe(len(items))
        return list(results)


async def _split(
    apply: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
    items: Sequence[T],
    name: str,
    max_backoff: float,
    store_answers: Callable[[], Awaitable[bool]] | None,
    exc: Exception,
) -> list[R | Exception]:
    if len(items) == 1:
        metrics.POISON_ISOLATED.inc()
        log.error("%s: %s fails on its own: %r", name, describe(items[0]), exc)
        return [exc]
    log.warning("%s: batch of %d keeps failing (%r); splitting it", name, len(items), exc)
    half = len(items) // 2
    out = await apply_retrying(apply, items[:half], name, max_backoff, store_answers)
    out += await apply_retrying(apply, items[half:], name, max_backoff, store_answers)
    return out


async def _answers(store_answers: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return await store_answers()
    except Exception:
        return False
