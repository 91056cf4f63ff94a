"""Coalesced acks: one `basic.ack(multiple=True)` for a run of finished deliveries.

A consumer whose handlers finish together (the inbound projection commits 500 events at
once) would otherwise send 500 ack frames, each with its own future and drain. The acker
tracks the delivery tags in hand in arrival order; when handlers finish it acks the longest
finished prefix with one frame (`multiple` covers every unacked tag up to it, so the prefix
must hold no delivery still in hand). Finished deliveries behind one still in hand wait
`BEHIND_DELAY` for the prefix to catch up (a worker with a full SMPP window always has an
earlier job in hand, and acking each one alone cost an ack frame and a socket write a
message); those still behind then are acked one by one, so a slow handler holds the others'
prefetch slots for no longer than that.

Tags belong to a channel: after a reconnect the robust channel starts again from 1, and
whatever was in hand on the old channel is redelivered by the broker, so the acker forgets
the old channel's tags.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)

BEHIND_DELAY = 0.05  # seconds a finished delivery behind one in hand waits for a multiple ack


async def settle(op: Awaitable[Any]) -> None:
    """Await an ack/nack; after a broker drop the channel is gone and the broker requeues
    unacked messages itself, so a failed ack is a future duplicate, never a loss."""
    try:
        await op
    except Exception as exc:
        log.warning("ack/nack failed (message will be redelivered): %r", exc)


class Acker:
    """Tracks deliveries in hand on one consumer's channel (an aiormq channel) and acks
    finished ones."""

    def __init__(self) -> None:
        self._channel: Any = None
        # delivery tag → True once its handler finished, False while still in hand (dicts
        # keep insertion order, and tags arrive in increasing order on a channel).
        self._pending: dict[int, bool] = {}
        self._scheduled = False
        self._late: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def track(self, channel: Any, tag: int) -> None:
        """A delivery arrived and is now in hand."""
        if channel is not self._channel:
            self._pending.clear()
            self._channel = channel
        self._pending[tag] = False

    def forget(self, channel: Any, tag: int) -> None:
        """The delivery, still in hand, is settled some other way (nack, or left to the
        broker); a finished one keeps its ack."""
        if channel is self._channel and self._pending.get(tag) is False:
            del self._pending[tag]
            self._schedule()

    def done(self, channel: Any, tag: int) -> None:
        """The handler finished: ack it soon, together with its finished neighbours."""
        if channel is not self._channel or tag not in self._pending:
            self._spawn(channel, tag, multiple=False)
            return
        self._pending[tag] = True
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            # After the handlers woken in this loop iteration have finished too.
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self, *, behind_too: bool = False) -> None:
        """Ack the finished prefix with one frame; finished deliveries behind one in hand
        are acked one by one when `behind_too`, else `BEHIND_DELAY` later."""
        self._scheduled = False
        last: int | None = None
        while self._pending:
            tag, finished = next(iter(self._pending.items()))
            if not finished:
                break
            del self._pending[tag]
            last = tag
        if last is not None:
            self._spawn(self._channel, last, multiple=True)
        behind = [tag for tag, finished in self._pending.items() if finished]
        if not behind:
            return
        if behind_too:
            for tag in behind:
                del self._pending[tag]
                self._spawn(self._channel, tag, multiple=False)
        elif self._late is None:
            self._late = asyncio.get_running_loop().call_later(BEHIND_DELAY, self._flush_late)

    def _flush_late(self) -> None:
        self._late = None
        self.flush(behind_too=True)

    def _spawn(self, channel: Any, tag: int, *, multiple: bool) -> None:
        if channel is None or channel.is_closed:
            return  # the broker has them back already
        task = asyncio.ensure_future(settle(channel.basic_ack(tag, multiple=multiple)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Send what is finished and wait until the broker has every ack."""
        if self._late is not None:
            self._late.cancel()
            self._late = None
        self.flush(behind_too=True)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
