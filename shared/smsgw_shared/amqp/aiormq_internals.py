"""Everything smsgw does with aiormq's private channel state, and only that.

Supported: aiormq >=7.2.4,<7.3 (`SUPPORTED`; `shared/pyproject.toml` pins the same range and
`shared/tests/amqp/test_internals.py` fails, saying what changed, when the installed aiormq
leaves it or no longer has what is used here).

`publish_batch` publishes many messages as one buffer on an `aiormq.Channel`: it takes the
channel's `lock` once, numbers the messages from the channel's `delivery_tag`, registers
each one in `confirmations` (by delivery tag) and `message_id_delivery_tag` (by message id,
for a `basic.return`), puts the whole buffer on the connection's `write_queue` as one
`ChannelFrame` and waits for it to drain, then for the broker's confirms. aiormq's public
`basic_publish` does the same per message, with a lock, a queue put and a drain each: under
a busy event loop that cost several times the CPU a message of this path, and the API's
dispatcher fell behind its outbox (`frames.py`; figures in the README).

What this relies on, as aiormq 7.2 does it (`aiormq/channel.py`):
- `Channel.basic_publish` increments `delivery_tag` under `lock` (a property giving an
  async context manager that also refuses a closed channel), stores a future in
  `confirmations[tag]` and the tag in `message_id_delivery_tag[message_id]`, and puts a
  `ChannelFrame(payload, should_close, drain_future)` on `write_queue`;
- `_confirm_delivery` pops `confirmations[tag]` and calls `done()`, then `set_result` (ack)
  or `set_exception` (nack) on it; `_on_confirm_frame` does so for every tag up to a
  `multiple` ack;
- `_on_return_frame` finds the tag by `message_id_delivery_tag`, pops the entry from
  `confirmations` and calls `set_exception` (`on_return_raises`) or `set_result` on it;
- a closing channel rejects the futures of its `create_future` store (the batch's future)
  and calls `set_exception` on what is left in `confirmations`.

So each message's entry in `confirmations` is a `_Slot`: the few methods of a future that
aiormq calls there. When `usable` says no (another aiormq, or a channel that is not
aiormq's), `frames.publish_frames` publishes with the public `basic_publish` instead: the
same outcomes, slower.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Sequence
from importlib.metadata import version

import aiormq
import aiormq.abc
from aiormq.abc import ChannelFrame

SUPPORTED = (">=7.2.4", "<7.3")
_LOWEST = (7, 2, 4)
_BELOW = (7, 3)

# Instance attributes of a channel used here, with their types.
CHANNEL_STATE: dict[str, type | tuple[type, ...]] = {
    "delivery_tag": int,
    "confirmations": dict,
    "message_id_delivery_tag": dict,
    "write_queue": asyncio.Queue,
    "publisher_confirms": bool,
    "number": int,
    "max_content_size": int,
}
CHANNEL_FRAME_FIELDS = ("payload", "should_close", "drain_future")
# What aiormq's own code must still do with that state (method → snippets of its source).
HANDLING: dict[str, tuple[str, ...]] = {
    "basic_publish": (
        "async with self.lock",
        "self.delivery_tag += 1",
        "self.confirmations[delivery_tag] = confirmation",
        "self.message_id_delivery_tag[message_id] = delivery_tag",
        "self.write_queue.put(",
    ),
    "_confirm_delivery": (
        "self.confirmations.pop(delivery_tag)",
        "confirmation.done()",
        "confirmation.set_result(frame)",
        "confirmation.set_exception(",
    ),
    "_on_return_frame": (
        "self.message_id_delivery_tag.get(message_id)",
        "self.confirmations.pop(delivery_tag, None)",
        "confirmation.set_exception(",
        "confirmation.set_result(message)",
    ),
}


def parse_version(text: str) -> tuple[int, ...]:
    """'7.2.4' → (7, 2, 4); a pre-release or local suffix is ignored."""
    return tuple(int(n) for n in re.findall(r"\d+", text.split("+", maxsplit=1)[0])[:3])


def version_supported(text: str) -> bool:
    return _LOWEST <= parse_version(text) < _BELOW


def problems() -> list[str]:
    """What is wrong with the installed aiormq for `publish_batch`: nothing when it can be
    used. (Instance state is checked on a live channel by `channel_problems`.)"""
    found = []
    installed = version("aiormq")
    if not version_supported(installed):
        found.append(f"aiormq {installed} is not in the supported range {','.join(SUPPORTED)}")
    fields = {f.name for f in getattr(ChannelFrame, "__dataclass_fields__", {}).values()}
    missing = [f for f in CHANNEL_FRAME_FIELDS if f not in fields]
    if missing:
        found.append(f"aiormq.abc.ChannelFrame has no field(s) {missing}")
    for method, snippets in HANDLING.items():
        func = getattr(aiormq.Channel, method, None)
        if func is None:
            found.append(f"aiormq.Channel.{method} is gone")
            continue
        source = " ".join(inspect.getsource(func).split())
        for snippet in snippets:
            if " ".join(snippet.split()) not in source:
                found.append(f"aiormq.Channel.{method} no longer does {snippet!r}")
    return found


def channel_problems(channel: object) -> list[str]:
    """What a live channel lacks of the state `publish_batch` uses."""
    if not isinstance(channel, aiormq.Channel):
        return [f"not an aiormq.Channel: {type(channel).__name__}"]
    found = []
    if not hasattr(getattr(channel, "lock", None), "__aenter__"):
        found.append("aiormq.Channel.lock is not an async context manager")
    for name, kind in CHANNEL_STATE.items():
        value = getattr(channel, name, None)
        if not isinstance(value, kind):
            found.append(f"aiormq.Channel.{name} is {type(value).__name__}, expected {kind}")
    for name in ("create_future", "is_closed"):
        if not hasattr(channel, name):
            found.append(f"aiormq.Channel has no {name}")
    return found


@functools.cache
def _installed_ok() -> bool:
    return not problems()


def usable(channel: aiormq.abc.AbstractChannel) -> bool:
    """Whether `publish_batch` may drive this channel."""
    return _installed_ok() and isinstance(channel, aiormq.Channel) and not channel_problems(channel)


class _Batch:
    """The outcome of each message of one batch; `future` completes with the last one."""

    def __init__(self, future: asyncio.Future[object], size: int) -> None:
        self.future = future
        self.left = size


class _Slot:
    """A message's entry in aiormq's `confirmations`: the few methods of a future that
    aiormq calls there (`set_result` on an ack or return, `set_exception` on a nack or a
    return that raises, `done`/`cancelled` before it resolves one)."""

    __slots__ = ("batch", "outcome")

    def __init__(self, batch: _Batch) -> None:
        self.batch = batch
        self.outcome: object = _PENDING

    def done(self) -> bool:
        return self.outcome is not _PENDING

    def cancelled(self) -> bool:
        return False

    def set_result(self, value: object) -> None:
        self._resolve(value)

    def set_exception(self, exc: BaseException) -> None:
        self._resolve(exc)

    def _resolve(self, value: object) -> None:
        if self.outcome is not _PENDING:
            return
        self.outcome = value
        self.batch.left -= 1
        if self.batch.left == 0 and not self.batch.future.done():
            self.batch.future.set_result(None)


_PENDING = object()


async def publish_batch(
    channel: aiormq.Channel, payload: bytes, message_ids: Sequence[str], timeout: float
) -> list[object]:
    """Write `payload` (the frames of `len(message_ids)` publishes, in order, each with
    its message id) and wait for their confirms: each one's outcome, in order (the broker's
    `Basic.Ack`, a returned message, or the exception that failed it: a return, a nack, the
    channel's close, `TimeoutError` when no confirm came within `timeout` seconds)."""
    slots: list[_Slot] = []
    tags: list[tuple[int, str]] = []
    async with channel.lock:
        if channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        batch = _Batch(channel.create_future(), len(message_ids))
        first_tag = channel.delivery_tag
        for message_id in message_ids:
            channel.delivery_tag += 1
            tag = channel.delivery_tag
            slot = _Slot(batch)
            channel.confirmations[tag] = slot  # type: ignore[assignment]
            channel.message_id_delivery_tag[message_id] = tag
            slots.append(slot)
            tags.append((tag, message_id))
        drained = channel.create_future()
        buffer = ChannelFrame(payload=payload, should_close=False, drain_future=drained)
        try:
            await channel.write_queue.put(buffer)
        except BaseException:
            # Not written: the broker never saw these tags, so they are free again.
            channel.delivery_tag = first_tag
            _release(channel, tags, slots)
            batch.future.cancel()
            raise
        try:
            await drained
        except BaseException:
            _release(channel, tags, slots)
            batch.future.cancel()
            raise
    try:
        await asyncio.wait([batch.future], timeout=timeout)
    finally:
        late = _release(channel, tags, slots)
    failed = (
        batch.future.exception() if batch.future.done() and not batch.future.cancelled() else None
    )
    if not batch.future.done():
        batch.future.cancel()
    out: list[object] = []
    for slot, waiting in zip(slots, late, strict=True):
        if not waiting:
            out.append(slot.outcome)
        elif failed is not None:
            out.append(failed)  # the channel closed before this one's confirm
        else:
            out.append(TimeoutError("publish confirm timed out"))
    return out


def _release(
    channel: aiormq.Channel, tags: Sequence[tuple[int, str]], slots: Sequence[_Slot]
) -> list[bool]:
    """Drop the channel's bookkeeping for these messages (a return can no longer come for
    a confirmed one); which ones were still waiting for their outcome."""
    waiting = []
    for (tag, message_id), slot in zip(tags, slots, strict=True):
        late = not slot.done()
        if late:
            channel.confirmations.pop(tag, None)
        if channel.message_id_delivery_tag.get(message_id) == tag:
            del channel.message_id_delivery_tag[message_id]
        waiting.append(late)
    return waiting
