"""Publishes of outbox rows that timed out, until the broker answers them.

A publish that times out on a stalled broker (a memory or disk alarm, a stalled queue) is
not lost: its frames wait in the connection and reach the broker when the stall ends.
Published again meanwhile, the job would be queued twice, and once more for every try while
the stall lasts; competing workers of a pool would then each send a copy. So such a publish
is kept *in doubt*: it goes on in the background, waiting for the broker's answer, and its
rows are held in the store (`HOLD_S`: no relay of any API process takes them meanwhile).
When the broker answers, the confirmed rows leave the outbox and the failed ones are made
due for the relay at once. If this process dies first, the hold runs out and the relay
publishes the rows (the publish may have arrived: at least once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from smsgw_shared.amqp import Outgoing, Publisher, PublishError
from smsgw_shared.store.repos.messages import MessageRepository

log = logging.getLogger(__name__)

IN_DOUBT = "publish timed out; held until the broker answers it"


class PublishInDoubt(PublishError):
    """A publish that timed out and goes on: its rows are held, not failed."""


# How long a publish in doubt may take in all (the channel, the write, the confirms).
ANSWER_WAIT_S = 600.0
# How long its rows are held: past the publish's own limit, so a row comes due only once
# this process has settled it or is gone.
HOLD_S = ANSWER_WAIT_S + 60.0


class InDoubt:
    """The unanswered publishes of this process; `settle`s the store when they end."""

    def __init__(self, repo: MessageRepository) -> None:
        self.repo = repo
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Publishes in doubt or being settled."""
        return len(self._tasks)

    async def publish(
        self,
        publisher: Publisher,
        ids: Sequence[int],
        items: Sequence[Outgoing],
        timeout: float,
        hold: bool = True,
    ) -> list[PublishError | None]:
        """`publisher.publish_many(items)` for the outbox rows `ids`, waiting up to
        `timeout`. Past it the publish goes on in the background and each row's error is
        `PublishInDoubt`; the rows are held for `HOLD_S` (here, or with `hold=False` by the
        caller, whose transaction has them locked), and their fate is written to the store
        once the broker answers."""
        publish = asyncio.ensure_future(
            asyncio.wait_for(publisher.publish_many(items, ANSWER_WAIT_S), ANSWER_WAIT_S)
        )
        try:
            done, _ = await asyncio.wait({publish}, timeout=timeout)
        except asyncio.CancelledError:
            self._follow(list(ids), publish)  # the caller stops; the publish goes on
            raise
        if publish in done:
            return publish.result()
        if hold:
            try:
                await self.repo.release_outbox(ids, IN_DOUBT, after=HOLD_S)
            except Exception as exc:  # they keep their grace; the relay may add a copy
                log.warning("could not hold %d job(s) in doubt: %r", len(ids), exc)
        self._follow(list(ids), publish)
        return [PublishInDoubt(IN_DOUBT)] * len(items)

    def _follow(self, ids: list[int], publish: asyncio.Future[list[PublishError | None]]) -> None:
        async def settle() -> None:
            # Cancelled (shutdown), this cancels the publish too: the rows' hold stands.
            results: list[PublishError | None] | list[str]
            try:
                results = await publish
            except Exception as exc:  # TimeoutError past ANSWER_WAIT_S, among others
                results = [repr(exc)] * len(ids)
            done = [oid for oid, err in zip(ids, results, strict=True) if err is None]
            failed = [(oid, str(err)) for oid, err in zip(ids, results, strict=True) if err]
            log.info(
                "publish in doubt answered: %d job(s) confirmed, %d failed", len(done), len(failed)
            )
            try:
                await self.repo.settle_outbox(done, failed)
            except Exception as exc:
                # The rows' hold runs out and the relay publishes them (at least once).
                log.warning("could not record a late publish answer: %r", exc)

        task = asyncio.create_task(settle(), name="publish-in-doubt")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop following and publishing (at shutdown): rows still in doubt keep their hold
        and are the relay's when it runs out."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
