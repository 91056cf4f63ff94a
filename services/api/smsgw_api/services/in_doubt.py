"""Publishes of outbox rows that timed out, until the broker answers them.

A publish that times out on a stalled broker (a memory or disk alarm, a stalled queue) is
not lost: its frames wait in the connection and reach the broker when the stall ends.
Published again meanwhile, the job would be queued twice, and once more for every try while
the stall lasts; competing workers of a pool would then each send a copy. So this process
does not publish a row again while its last publish is in doubt: once the broker answers,
a confirmed row is done and a failed one is published again.

Per process: another API process's relay does not know of this one's doubts, so each API
process can still add one copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from smsgw_shared.amqp import Outgoing, Publisher, PublishError

IN_DOUBT = "publish timed out; not published again until the broker answers it"

# How long a publish in doubt waits for the broker's answer (its confirm, a nack, a return
# or the channel's close). Past it the publish counts as failed and its row is published
# again: a broker that stalls this long gets one more copy each time.
ANSWER_WAIT_S = 600.0
# An answered publish whose row was not asked about for this long is forgotten (its row
# was deleted some other way, or the relay's transaction that asked about it failed).
KEEP_S = 600.0


class InDoubt:
    """The unanswered publishes of this process, by outbox row id."""

    def __init__(self) -> None:
        # row id -> (the publish, the row's place in it, loop time it timed out)
        self._rows: dict[int, tuple[asyncio.Task[list[PublishError | None]], int, float]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    async def publish(
        self, publisher: Publisher, ids: Sequence[int], items: Sequence[Outgoing], timeout: float
    ) -> list[PublishError | None]:
        """`publisher.publish_many(items)` for the rows `ids`, waiting up to `timeout`. Past
        it, the publish goes on unawaited (up to `ANSWER_WAIT_S` for the broker's answer)
        and each row is in doubt (`IN_DOUBT` errors)."""
        task = asyncio.ensure_future(publisher.publish_many(items, ANSWER_WAIT_S))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        task.add_done_callback(_retrieve)
        loop = asyncio.get_running_loop()
        self._forget_old(loop.time())
        for k, oid in enumerate(ids):
            self._rows[oid] = (task, k, loop.time())
        return [PublishError(IN_DOUBT)] * len(items)

    def outcome(self, oid: int) -> tuple[bool, str | None] | None:
        """None when no publish of row `oid` is in doubt here; `(False, None)` while one is;
        `(True, error)` once it is answered (error None: confirmed), forgetting it."""
        entry = self._rows.get(oid)
        if entry is None:
            return None
        task, k, _ = entry
        if not task.done():
            return False, None
        del self._rows[oid]
        return True, _error_of(task, k)

    def _forget_old(self, now: float) -> None:
        old = [
            oid
            for oid, (task, _, since) in self._rows.items()
            if task.done() and now - since > KEEP_S
        ]
        for oid in old:
            del self._rows[oid]


def _error_of(task: asyncio.Task[list[PublishError | None]], k: int) -> str | None:
    if task.cancelled():
        return "publish cancelled"
    exc = task.exception()
    if exc is not None:
        return repr(exc)
    err = task.result()[k]
    return None if err is None else str(err)


def _retrieve(task: asyncio.Task[list[PublishError | None]]) -> None:
    """Read a failed publish's exception: `outcome` may never be asked for it."""
    if not task.cancelled():
        task.exception()
