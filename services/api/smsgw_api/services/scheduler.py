"""Scheduled sends: messages with a future `send_at` wait in the store; when due they move
to `queued` and their job goes to the outbox, which the relay publishes (≤ ~2 intervals)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from smsgw_shared.amqp import Topology
from smsgw_shared.runtime import stop_tasks
from smsgw_shared.store.repos.messages import MessageRepository

log = logging.getLogger(__name__)


def job_for(row: Mapping[str, Any], topology: Topology) -> dict[str, Any]:
    """The outbox row that sends a stored message: without a body, which the relay makes
    from the message's row when it publishes (and skips if it was canceled meanwhile)."""
    return {
        "message_id": row["id"],
        "exchange": topology.jobs_exchange,
        "routing_key": topology.job_routing_key(row["route"]),
        "body": None,
    }


class Scheduler:
    """Releases due scheduled messages every `interval` seconds."""

    def __init__(self, repo: MessageRepository, topology: Topology, interval: float) -> None:
        self.repo = repo
        self.topology = topology
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def run_once(self) -> int:
        total = 0
        while True:
            n = await self.repo.release_due(500, lambda r: job_for(r, self.topology))
            total += n
            if n < 500:
                return total

    async def _loop(self) -> None:
        while True:
            try:
                n = await self.run_once()
                if n:
                    log.info("released %d scheduled message(s)", n)
            except Exception as exc:
                log.warning("scheduler: %r", exc)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        await stop_tasks([self._task])
