"""The shared tail of the event log: one store poll for every subscriber of a process,
resume without loss or repeats, stream limits, revocation, the filter in Python and SQL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_api.auth import KeyCache
from smsgw_api.services import event_hub
from smsgw_api.services.event_hub import EventHub, GapTracker, Subscription, TooManyStreams
from smsgw_shared.store.repos.event_log import EventLogRepository, LoggedEvent, StreamFilter
from smsgw_shared.store.repos.keys import ApiKey, KeyRepository
from smsgw_shared.store.schema import event_log

_counter = itertools.count()


class CountingLog(EventLogRepository):
    """The real repository, counting who reads the store."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.tail_reads = 0
        self.filtered_reads = 0

    async def read_all_after(self, after: int, limit: int = 1000) -> list[LoggedEvent]:
        self.tail_reads += 1
        return await super().read_all_after(after, limit)

    async def read_after(self, *args: Any, **kwargs: Any) -> list[LoggedEvent]:
        self.filtered_reads += 1
        return await super().read_after(*args, **kwargs)


async def append(engine: AsyncEngine, *rows: dict[str, Any]) -> list[int]:
    """Log events; returns their ids."""
    full = []
    for r in rows:
        n = next(_counter)
        full.append(
            {
                "event_id": f"evt_hub_{uuid.uuid4().hex}_{n}",
                "type": r.get("type", "message.status"),
                "route": r.get("route"),
                "message_id": None,
                "api_key_id": r.get("key"),
                "payload": {"data": r.get("data", {"status": "sent", "n": n})},
            }
        )
    async with engine.begin() as conn:
        await EventLogRepository.append(conn, full)
        res = await conn.execute(
            event_log.select().where(event_log.c.event_id.in_([f["event_id"] for f in full]))
        )
        return sorted(r.id for r in res)


@pytest.fixture
async def keys(engine: AsyncEngine) -> AsyncIterator[KeyRepository]:
    yield KeyRepository(engine)


async def make_key(keys: KeyRepository, scopes: list[str] | None = None) -> ApiKey:
    key, _ = await keys.create("hub" + uuid.uuid4().hex[:8], scopes or ["read"])
    return key


async def take(sub: Subscription, n: int, after: int | None = None) -> list[LoggedEvent]:
    """The first `n` events of a subscription (empty quiet batches skipped)."""
    out: list[LoggedEvent] = []
    async for batch in sub.follow(after):
        out.extend(batch)
        if len(out) >= n:
            break
    return out


def hub_of(engine: AsyncEngine, keys: KeyRepository, **kw: Any) -> tuple[EventHub, CountingLog]:
    repo = CountingLog(engine)
    kw.setdefault("interval", 0.02)
    return EventHub(repo, KeyCache(keys, 0.05), **kw), repo


async def test_many_subscribers_one_tail(engine: AsyncEngine, keys: KeyRepository) -> None:
    hub, repo = hub_of(engine, keys)
    admin = await make_key(keys, ["admin"])
    subs = [hub.subscribe(admin, StreamFilter()) for _ in range(5)]
    for s in subs:
        await s.start()
    ids = await append(engine, {}, {}, {})
    got = await asyncio.gather(*(asyncio.wait_for(take(s, 3), 10) for s in subs))
    assert all([e.id for e in g] == ids for g in got)
    # Only the tail read the store: no subscriber polled it on its own.
    assert repo.filtered_reads == 0 and repo.tail_reads >= 1
    assert hub.streams == 0  # each follow ended and gave its place back
    await hub.close()


async def test_resume_replays_each_missed_event_once(
    engine: AsyncEngine, keys: KeyRepository
) -> None:
    hub, _ = hub_of(engine, keys)
    admin = await make_key(keys, ["admin"])
    first = await append(engine, {}, {}, {}, {})
    live = hub.subscribe(admin, StreamFilter())
    await live.start()
    later = await append(engine, {}, {})
    # The tail has handed out `later`; a client that saw only first[0] reconnects.
    assert [e.id for e in await asyncio.wait_for(take(live, 2), 10)] == later
    again = hub.subscribe(admin, StreamFilter())
    await again.start(after=first[0])
    more_task = asyncio.create_task(asyncio.wait_for(take(again, 6), 10))
    newest = await append(engine, {})
    got = [e.id for e in await more_task]
    assert got == first[1:] + later + newest
    await hub.close()


async def test_stream_limits_per_key_and_in_all(engine: AsyncEngine, keys: KeyRepository) -> None:
    hub, _ = hub_of(engine, keys, max_per_key=2, max_streams=3)
    a, b = await make_key(keys), await make_key(keys)
    s1, s2 = hub.subscribe(a, StreamFilter()), hub.subscribe(a, StreamFilter())
    with pytest.raises(TooManyStreams, match="this key"):
        hub.subscribe(a, StreamFilter())
    s3 = hub.subscribe(b, StreamFilter())
    with pytest.raises(TooManyStreams, match="this server"):
        hub.subscribe(b, StreamFilter())
    s1.close()
    s1.close()  # closing twice gives one place back
    assert hub.streams == 2
    s4 = hub.subscribe(a, StreamFilter())
    del s4  # a subscription dropped unused (a response that never started) frees its place
    assert hub.streams == 2
    s2.close()
    s3.close()
    assert hub.streams == 0


async def test_a_revoked_key_stops_streaming(engine: AsyncEngine, keys: KeyRepository) -> None:
    hub, _ = hub_of(engine, keys, recheck=0.05)
    key = await make_key(keys, ["admin"])
    sub = hub.subscribe(key, StreamFilter())
    ended = asyncio.Event()

    async def run() -> None:
        async for _ in sub.follow():
            pass
        ended.set()

    task = asyncio.create_task(run())
    await append(engine, {})
    assert not ended.is_set()
    await keys.revoke(key.id)
    await asyncio.wait_for(ended.wait(), 10)
    await task
    assert hub.streams == 0
    await hub.close()


async def test_a_subscriber_too_far_behind_is_ended(
    engine: AsyncEngine, keys: KeyRepository
) -> None:
    hub, _ = hub_of(engine, keys, buffer=3)
    admin = await make_key(keys, ["admin"])
    slow = hub.subscribe(admin, StreamFilter())
    await slow.start()
    await append(engine, *({} for _ in range(10)))
    # Let the tail take them all while the subscriber reads nothing.
    for _ in range(200):
        if hub._tracker.position >= (await EventLogRepository(engine).last_id()):
            break
        await asyncio.sleep(0.02)
    got: list[LoggedEvent] = []
    async for batch in slow.follow():
        got.extend(batch)
    assert got == []  # ended at once: it resumes from the store with Last-Event-ID
    await hub.close()


def test_gap_tracker_waits_for_a_late_commit_then_moves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ev(i: int) -> LoggedEvent:
        return LoggedEvent(i, f"e{i}", "message.status", {})

    t = GapTracker(10)
    assert [e.id for e in t.accept([ev(11), ev(13)])] == [11, 13]
    assert t.position == 11  # 12 is still committing
    assert t.accept([ev(11), ev(13)]) == []  # nothing twice
    assert [e.id for e in t.accept([ev(12), ev(13), ev(14)])] == [12, 14]
    assert t.position == 14
    t.accept([ev(16)])
    monkeypatch.setattr(event_hub, "GAP_TIMEOUT", -1.0)
    t.accept([ev(16)])
    assert t.position == 16  # 15 never came: moved past it


async def test_python_filter_matches_the_sql_one(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(event_log).where(event_log.c.event_id.like("evt_hub_%")))
    me, other = uuid.uuid4(), uuid.uuid4()
    rows = []
    for typ, route, key, status in itertools.product(
        ["message.status", "message.received", "route.state"],
        ["modem:m1", "modem:m2", "smpp:b1", None],
        [me, other, None],
        ["sent", "delivered"],
    ):
        rows.append({"type": typ, "route": route, "key": key, "data": {"status": status}})
    ids = await append(engine, *rows)
    repo = EventLogRepository(engine)
    whole = [e for e in await repo.read_all_after(ids[0] - 1, 10_000) if e.id in set(ids)]
    filters = [
        StreamFilter(),
        StreamFilter(types=("message.status.delivered", "route.state")),
        StreamFilter(routes=("modem:*",)),
        StreamFilter(routes=("smpp:b1", "modem:m2"), types=("message.received",)),
        StreamFilter(viewer_id=me, admin=False),
        StreamFilter(viewer_id=me, admin=False, visible_routes=("modem:m2",)),
        StreamFilter(viewer_id=me, admin=False, visible_routes=("modem:*", "smpp:b1")),
        StreamFilter(viewer_id=None, admin=False, visible_routes=()),
        StreamFilter(types=("message.status",), viewer_id=other, admin=False, routes=("modem:*",)),
    ]
    for flt in filters:
        sql = {
            e.id for e in await repo.read_after(ids[0] - 1, flt, 10_000) if e.payload is not None
        }
        py = {e.id for e in whole if flt.matches(e)}
        assert sql & set(ids) == py, flt
        # Each filter lets something through, but the one that may see nothing.
        assert bool(py) == (flt.admin or flt.viewer_id is not None), flt
