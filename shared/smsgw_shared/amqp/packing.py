"""Many small payloads in one AMQP message: fewer broker messages per SMS.

A worker publishes a status event for every part it sends and every receipt it gets: two
broker messages per SMS, each a quorum-queue append, a confirm, a delivery and an ack. A
`Packer` joins the events published at about the same time (within one event-loop turn,
and while earlier packs wait for their confirms) into one message per exchange and routing
key: the body is a JSON array of the payloads, header `x-smsgw-packed` gives how many.
Each caller still returns only once the broker has confirmed the message holding its
payload (or raises `PublishError`), so nothing is acknowledged upstream before it is
safe. `BatchConsumer` unpacks such messages (`unpack` below); a packed message is acked
when every payload in it is done, and retried or dead-lettered whole otherwise, which is
safe for payloads whose consumer is idempotent (status events carry an `event_id`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from smsgw_shared.amqp.publisher import Outgoing, Publisher, PublishError
from smsgw_shared.messages.base import Payload, PayloadError

PACKED = "x-smsgw-packed"
# Payloads per pack at most: a consumer's prefetch counts messages, so a backlog of packs
# held in hand is at most prefetch x this many payloads.
MAX_PACK = 50

P = TypeVar("P", bound=Payload)
Entry = tuple[Outgoing, "asyncio.Future[None]"]


class Packer:
    """Publishes payloads packed; see the module docstring."""

    def __init__(self, publisher: Publisher, max_items: int = MAX_PACK, in_flight: int = 2) -> None:
        self.publisher = publisher
        self.max_items = min(max_items, MAX_PACK)
        self.in_flight = in_flight
        self._waiting: dict[tuple[str, str], list[Entry]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._rounds: set[asyncio.Task[None]] = set()

    async def publish(self, item: Outgoing) -> None:
        """Publish `item` in the next pack; return once that pack is confirmed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((item.exchange, item.routing_key), []).append((item, fut))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        # Let the callers of this loop turn join. Up to `in_flight` rounds of packs await
        # their confirms at once; callers arriving meanwhile gather for the next round.
        await asyncio.sleep(0)
        while self._waiting:
            if len(self._rounds) >= self.in_flight:
                await asyncio.wait(self._rounds, return_when=asyncio.FIRST_COMPLETED)
                continue
            waiting, self._waiting = self._waiting, {}
            chunks = [
                entries[i : i + self.max_items]
                for entries in waiting.values()
                for i in range(0, len(entries), self.max_items)
            ]
            task = asyncio.create_task(self._round(chunks))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)

    async def _round(self, chunks: list[list[Entry]]) -> None:
        await asyncio.gather(*(self._send(c) for c in chunks))

    async def _send(self, chunk: list[Entry]) -> None:
        first = chunk[0][0]
        if len(chunk) == 1:
            item = first
        else:
            body = b"[" + b",".join(it.body() for it, _ in chunk) + b"]"
            item = Outgoing(first.exchange, first.routing_key, body, headers={PACKED: len(chunk)})
        try:
            (err,) = await self.publisher.publish_many([item])
        except Exception as exc:  # never leave a caller waiting
            err = PublishError(f"packed publish failed: {exc!r}")
        for _, fut in chunk:
            if fut.done():
                continue
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)

    async def close(self) -> None:
        """Wait for the packs in flight (their callers are waiting for them too)."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await asyncio.gather(*self._rounds, return_exceptions=True)


_adapters: dict[type[Any], TypeAdapter[Any]] = {}


def unpack(payload_type: type[P], body: bytes, headers: dict[str, Any]) -> list[P]:
    """The payloads of one message: several for a packed message, else one."""
    if PACKED not in headers:
        return [payload_type.from_bytes(body)]
    adapter = _adapters.get(payload_type)
    if adapter is None:
        adapter = _adapters[payload_type] = TypeAdapter(list[payload_type])  # type: ignore[valid-type]
    try:
        items: Sequence[P] = adapter.validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<body>"
        raise PayloadError(f"packed {payload_type.__name__}: {loc}: {first['msg']}") from exc
    for p in items:
        if p.v > payload_type.VERSION:
            raise PayloadError(
                f"{payload_type.__name__}: unsupported version {p.v} > {payload_type.VERSION}"
            )
    if not items:
        raise PayloadError(f"packed {payload_type.__name__}: empty")
    return list(items)
