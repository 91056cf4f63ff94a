"""Webhook delivery to a real local HTTP receiver: signatures, retries, dead letters,
redelivery, SSRF refusal, a hanging endpoint next to a healthy one."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from smsgw_inbound.dispatcher import Dispatcher
from smsgw_inbound.events import LogEvent, record_events, stable_id
from smsgw_shared.config import Settings, WebhooksConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.webhooks import ClaimedDelivery, NewDelivery, WebhookRepository
from smsgw_shared.store.schema import webhook_deliveries
from smsgw_shared.testing import free_port
from smsgw_shared.testing.helpers import wait_for
from smsgw_shared.urlguard import UrlRefused, check_url

from .conftest import Receiver, clear_webhooks, http_receiver


def config(settings: Settings, **kw: object) -> WebhooksConfig:
    base = settings.webhooks.model_dump() | {"poll_interval": 0.05, "timeout": 2.0}
    return WebhooksConfig.model_validate(base | kw)


@contextlib.asynccontextmanager
async def dispatching(engine: AsyncEngine, cfg: WebhooksConfig) -> AsyncIterator[Dispatcher]:
    stop = asyncio.Event()
    d = Dispatcher(WebhookRepository(engine), cfg)
    task = asyncio.create_task(d.run(stop))
    try:
        yield d
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def emit(engine: AsyncEngine, n: int = 1, to: str = "+79160001234") -> list[str]:
    """Log `n` received-message events (they fan out to the subscriptions)."""
    now = utcnow()
    events = [
        LogEvent(
            event_id=stable_id("test", uuid.uuid4()),
            type="message.received",
            data={"id": str(uuid.uuid4()), "from": "+79990001122", "to": to, "text": f"hi {i}"},
            created_at=now,
            route="modem:m1",
        )
        for i in range(n)
    ]
    async with engine.begin() as conn:
        await record_events(conn, events)
    return [e.event_id for e in events]


@pytest.fixture
async def repo(engine: AsyncEngine) -> AsyncIterator[WebhookRepository]:
    await clear_webhooks(engine)
    yield WebhookRepository(engine)
    await clear_webhooks(engine)


async def test_signed_per_standard_webhooks(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    async with http_receiver() as rec:
        hook, secret = await repo.create(url=rec.url, events=["message.received"])
        assert secret.startswith("whsec_")
        ids = await emit(engine)
        async with dispatching(engine, config(settings)):
            await wait_for(lambda: _async(len(rec.received) == 1))
        got = rec.received[0]
        payload = Webhook(secret).verify(got["body"], got["headers"])
        assert payload["id"] == ids[0] == got["headers"]["webhook-id"]
        assert payload["type"] == "message.received" and payload["data"]["text"] == "hi 0"
        # After a rotation both secrets sign (receivers switch over at their pace).
        new_secret = await repo.rotate(hook["id"])
        assert new_secret and new_secret != secret
        await emit(engine)
        async with dispatching(engine, config(settings)):
            await wait_for(lambda: _async(len(rec.received) == 2))
        got = rec.received[1]
        assert len(got["headers"]["webhook-signature"].split(" ")) == 2
        Webhook(secret).verify(got["body"], got["headers"])
        Webhook(new_secret).verify(got["body"], got["headers"])
        rows = await repo.deliveries(hook["id"], 10)
        assert {r["status"] for r in rows} == {"succeeded"}
        assert all(len(r["attempts_detail"]) == 1 for r in rows)


async def test_retry_schedule_then_success(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    async with http_receiver(respond=lambda n: 500 if n < 2 else 204) as rec:
        hook, _ = await repo.create(url=rec.url, events=["*"])
        await emit(engine)
        async with dispatching(engine, config(settings, retry_schedule=[0.2, 0.4, 5.0])):
            await wait_for(lambda: _async(len(rec.received) == 3), timeout=10)
            await wait_for(lambda: _delivery_status(repo, hook["id"], "succeeded"))
        times = [
            r["attempted_at"] for r in (await repo.deliveries(hook["id"], 1))[0]["attempts_detail"]
        ]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        # Never before the schedule's 0.2 s and 0.4 s (-20 % jitter); how late depends on
        # the host, and the third attempt succeeding shows the 5 s step was not taken.
        assert gaps[0] >= 0.15 and gaps[1] >= 0.3, gaps
        row = (await repo.deliveries(hook["id"], 1))[0]
        assert row["attempts"] == 3 and row["last_status_code"] == 204
        assert [a["status_code"] for a in row["attempts_detail"]] == [500, 500, 204]
        assert len({r["headers"]["webhook-id"] for r in rec.received}) == 1  # same id each time


async def test_dead_letter_then_manual_redelivery(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    answers = {"code": 503}
    async with http_receiver(respond=lambda n: answers["code"]) as rec:
        hook, _ = await repo.create(url=rec.url, events=["message.received"])
        await emit(engine)
        async with dispatching(engine, config(settings, retry_schedule=[0.1, 0.1])):
            await wait_for(lambda: _delivery_status(repo, hook["id"], "dead"), timeout=10)
            assert len(rec.received) == 3
            row = (await repo.deliveries(hook["id"], 1))[0]
            assert row["last_error"] == "HTTP 503" and len(row["attempts_detail"]) == 3
            answers["code"] = 200
            assert await repo.redeliver(hook["id"], row["id"])
            await wait_for(lambda: _delivery_status(repo, hook["id"], "succeeded"))
        assert len(rec.received) == 4


async def test_ssrf_refused_at_subscription_and_delivery(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    for url in (
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://100.64.0.1/x",
        "ftp://example.com/x",
        "http://user:pw@8.8.8.8/x",
    ):
        with pytest.raises(UrlRefused):
            await check_url(url, allow_private=False)
    await check_url("http://8.8.8.8/hook", allow_private=False)
    await check_url("http://127.0.0.1:1/x", allow_private=True)
    async with http_receiver() as rec:
        for url in (rec.url, f"http://localhost:{rec.port}/hook"):
            hook, _ = await repo.create(url=url, events=["*"])  # stored while allowed…
        await emit(engine)
        # …then refused at delivery time, without a request being made.
        async with dispatching(engine, config(settings, allow_private=False)):
            await wait_for(lambda: _all_dead(repo), timeout=10)
        assert rec.received == []
        rows = await repo.deliveries(hook["id"], 5)
        assert rows[0]["last_error"].startswith("refused")


async def test_hanging_endpoint_does_not_delay_others(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    release = asyncio.Event()
    async with held_receiver(release) as slow, http_receiver() as fast:
        slow_hook, _ = await repo.create(url=slow.url, events=["*"])
        fast_hook, _ = await repo.create(url=fast.url, events=["*"])
        await emit(engine, 40)
        # The slow endpoint answers only when released and the timeout outlasts the test:
        # the order below does not depend on the host's speed.
        async with dispatching(engine, config(settings, timeout=60.0, concurrency_per_endpoint=2)):
            await wait_for(lambda: _async(len(fast.received) == 40), timeout=30)
            # All 40 arrived while the slow endpoint's first attempts were still hanging.
            assert len(slow.received) == 2  # its two slots
            slow_rows = await repo.deliveries(slow_hook["id"], 100)
            assert len(slow_rows) == 40 and all(r["attempts"] == 0 for r in slow_rows)
            release.set()
        rows = await repo.deliveries(fast_hook["id"], 100)
        assert len(rows) == 40


@contextlib.asynccontextmanager
async def held_receiver(release: asyncio.Event) -> AsyncIterator[Receiver]:
    """A receiver that holds every request until `release` is set, then answers 200."""
    rec = Receiver(port=free_port())

    async def handler(request: web.Request) -> web.Response:
        rec.received.append({"headers": dict(request.headers), "body": await request.read()})
        await release.wait()
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", rec.port).start()
    try:
        yield rec
    finally:
        release.set()
        await runner.cleanup()


async def _async(value: bool) -> bool:
    return value


async def _delivery_status(repo: WebhookRepository, hook_id: uuid.UUID, status: str) -> bool:
    rows = await repo.deliveries(hook_id, 10)
    return bool(rows) and all(r["status"] == status for r in rows)


async def _all_dead(repo: WebhookRepository) -> bool:
    hooks = await repo.list_active(None)
    for h in hooks:
        if not await _delivery_status(repo, h["id"], "dead"):
            return False
    return True


def _delivery_rows(
    url: str,
    times: list[datetime],
    webhook_id: uuid.UUID | None = None,
    status: str = "pending",
) -> list[dict[str, Any]]:
    """Deliveries to `url` whose next attempt is at `times`."""
    return [
        {
            "id": (i := uuid.uuid4()),
            "webhook_id": webhook_id,
            "url": url,
            "event_id": f"ev-{i}",
            "event_type": "message.received",
            "payload": "{}",
            "status": status,
            "next_attempt_at": t,
        }
        for t in times
    ]


async def _add_deliveries(
    engine: AsyncEngine,
    url: str,
    times: list[datetime],
    webhook_id: uuid.UUID | None = None,
    status: str = "pending",
) -> list[uuid.UUID]:
    """Store `_delivery_rows`; their ids, in the order of `times`."""
    rows = _delivery_rows(url, times, webhook_id, status)
    async with engine.begin() as conn:
        await conn.execute(insert(webhook_deliveries), rows)
    return [r["id"] for r in rows]


def _claim_order_ok(claimed: list[ClaimedDelivery], due: dict[uuid.UUID, datetime]) -> bool:
    return [due[c.id] for c in claimed] == sorted(due[c.id] for c in claimed)


async def test_claim_skips_a_full_urls_backlog(
    engine: AsyncEngine, repo: WebhookRepository
) -> None:
    """A URL without room and with thousands of due deliveries interleaved (in time) with a
    healthy URL's: the healthy one's due deliveries still come oldest first, within its room
    and the total limit, and the full URL's never."""
    dead_hook, _ = await repo.create(url="http://dead.invalid/hook", events=["*"])
    ok_hook, _ = await repo.create(url="http://ok.invalid/hook", events=["*"])
    base = utcnow() - timedelta(hours=1)
    dead_ids = await _add_deliveries(
        engine,
        dead_hook["url"],
        [base + timedelta(milliseconds=i) for i in range(3000)],
        dead_hook["id"],
    )
    ok_times = [base + timedelta(milliseconds=100 * i + 50) for i in range(30)]
    ok_ids = await _add_deliveries(engine, ok_hook["url"], ok_times, ok_hook["id"])
    due = dict(zip(ok_ids, ok_times, strict=True))
    # Not claimable: due later, or no longer pending.
    await _add_deliveries(engine, ok_hook["url"], [utcnow() + timedelta(hours=1)], ok_hook["id"])
    await _add_deliveries(engine, ok_hook["url"], [base], ok_hook["id"], status="succeeded")
    await _add_deliveries(engine, ok_hook["url"], [base], ok_hook["id"], status="dead")
    full = {dead_hook["url"]: 0}

    # Room of the healthy URL (10) below the default and the limit.
    got = await repo.claim(500, full | {ok_hook["url"]: 10}, 100, 60.0, 3600.0)
    assert [c.id for c in got] == ok_ids[:10]
    assert all(c.url == ok_hook["url"] and c.secrets for c in got)
    # The total limit (7) below the URL's (default) room; the 10 above are leased now.
    got = await repo.claim(7, full, 100, 60.0, 3600.0)
    assert [c.id for c in got] == ok_ids[10:17]
    # The rest, and never the full URL's, nor those due later or not pending.
    got = await repo.claim(500, full, 100, 60.0, 3600.0)
    assert [c.id for c in got] == ok_ids[17:]
    assert _claim_order_ok(got, due)
    assert await repo.claim(500, full, 100, 60.0, 3600.0) == []
    # With room again, the dead URL's oldest come back (room-limited).
    got = await repo.claim(500, {dead_hook["url"]: 5}, 100, 60.0, 3600.0)
    assert [c.id for c in got] == dead_ids[:5]


async def test_any_due_sees_exactly_what_a_claim_would_take(
    engine: AsyncEngine, repo: WebhookRepository
) -> None:
    """The cheap probe the dispatcher polls with: pending and due only."""
    hook, _ = await repo.create(url="http://probe.invalid/hook", events=["*"])
    assert not await repo.any_due()  # nothing at all
    past = utcnow() - timedelta(minutes=1)
    await _add_deliveries(engine, hook["url"], [utcnow() + timedelta(hours=1)], hook["id"])
    await _add_deliveries(engine, hook["url"], [past], hook["id"], status="succeeded")
    await _add_deliveries(engine, hook["url"], [past], hook["id"], status="dead")
    assert not await repo.any_due()  # due later, or no longer pending
    assert await repo.claim(500, {}, 100, 60.0, 3600.0) == []
    ids = await _add_deliveries(engine, hook["url"], [past], hook["id"])
    assert await repo.any_due()
    assert [c.id for c in await repo.claim(500, {}, 100, 60.0, 3600.0)] == ids
    assert not await repo.any_due()  # leased: due again only when the lease runs out


async def test_claim_spreads_across_urls(engine: AsyncEngine, repo: WebhookRepository) -> None:
    """Every URL with due deliveries gets its share (status callbacks: one URL each)."""
    assert await repo.claim(500, {}, 4, 60.0, 3600.0) == []  # nothing pending at all
    base = utcnow() - timedelta(minutes=10)
    urls = [f"https://cb{i:03}.invalid/status" for i in range(300)]
    due: dict[uuid.UUID, datetime] = {}
    oldest: dict[str, list[uuid.UUID]] = {}
    for n, url in enumerate(urls[:5]):
        times = [base + timedelta(seconds=j, milliseconds=n) for j in range(20)]
        ids = await _add_deliveries(engine, url, times)
        due |= dict(zip(ids, times, strict=True))
        oldest[url] = ids

    got = await repo.claim(500, {}, 4, 60.0, 3600.0)
    assert Counter(c.url for c in got) == dict.fromkeys(urls[:5], 4)
    assert {c.id for c in got} == {i for ids in oldest.values() for i in ids[:4]}
    assert _claim_order_ok(got, due)
    assert all(c.webhook_id is None and c.secrets == () for c in got)

    # Per-URL room (one full, one smaller than the default) and a total limit.
    room = {urls[0]: 0, urls[1]: 2}
    got = await repo.claim(9, room, 3, 60.0, 3600.0)
    per_url = Counter(c.url for c in got)
    assert len(got) == 9 and urls[0] not in per_url and per_url[urls[1]] == 2
    assert all(n <= 3 for n in per_url.values())
    for url in per_url:  # each URL's next oldest, after the 4 leased above
        assert {c.id for c in got if c.url == url} == set(oldest[url][4 : 4 + per_url[url]])

    # Many URLs: one each, every one of them.
    for n, url in enumerate(urls[5:]):
        times = [base + timedelta(seconds=j, milliseconds=n) for j in range(2)]
        await _add_deliveries(engine, url, times)
    got = await repo.claim(500, dict.fromkeys(urls[:5], 0), 1, 60.0, 3600.0)
    assert sorted(c.url for c in got) == urls[5:]


def _rows_read(plan: dict[str, Any]) -> Iterator[int]:
    """Rows of webhook_deliveries each scan of an EXPLAIN ANALYZE plan returned or dropped."""
    if plan.get("Relation Name") == "webhook_deliveries":
        dropped = plan.get("Rows Removed by Filter", 0) + plan.get(
            "Rows Removed by Index Recheck", 0
        )
        yield (plan["Actual Rows"] + dropped) * plan["Actual Loops"]
    for sub in plan.get("Plans", ()):
        yield from _rows_read(sub)


async def test_claim_never_reads_a_full_urls_backlog(
    engine: AsyncEngine, repo: WebhookRepository
) -> None:
    """The claim's statement, run again under EXPLAIN ANALYZE: with a full URL's 3,000 due
    deliveries interleaved with a healthy URL's, only the healthy URL's rows are read. (With
    these statistics and a plain `url = ...`, the planner walks ix_deliveries_due, every
    URL's due rows in time order, instead; so did the single time-ordered claim before.)"""
    dead_hook, _ = await repo.create(url="http://dead.invalid/hook", events=["*"])
    ok_hook, _ = await repo.create(url="http://ok.invalid/hook", events=["*"])
    base = utcnow() - timedelta(hours=1)
    # Stored in time order, both URLs mixed, as the projection enqueues them.
    rows = _delivery_rows(
        dead_hook["url"], [base + timedelta(milliseconds=i) for i in range(3000)], dead_hook["id"]
    ) + _delivery_rows(
        ok_hook["url"],
        [base + timedelta(milliseconds=2 * i + 1) for i in range(1500)],
        ok_hook["id"],
    )
    rows.sort(key=lambda r: r["next_attempt_at"])
    async with engine.begin() as conn:
        await conn.execute(insert(webhook_deliveries), rows)
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE webhook_deliveries"))
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, stmt: str, params: Any, *_: Any) -> None:
        if "LATERAL" in stmt:
            captured.append((stmt, params))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        got = await repo.claim(500, {dead_hook["url"]: 0}, 100, 60.0, 3600.0)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(got) == 100 and {c.url for c in got} == {ok_hook["url"]}
    [(stmt, params)] = captured
    async with engine.connect() as conn:  # rolled back: the rows it locks are not claimed
        res = await conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + stmt, params)
        plan = res.scalar_one()[0]["Plan"]
    # The healthy URL's next 100 plus a few index probes; none of the full URL's 3,000.
    assert sum(_rows_read(plan)) <= 100 + 5


async def test_enqueue_keeps_a_delivery_enqueued_before(
    engine: AsyncEngine, repo: WebhookRepository
) -> None:
    """One statement over arrays: the same subscription, event and URL twice (in one call
    and again later) is one delivery; a status callback (no subscription) is its own."""
    row, _ = await repo.create(url="http://127.0.0.1:9/hook", events=["*"])
    hook = uuid.UUID(str(row["id"]))
    eid = stable_id("enqueue-twice", uuid.uuid4().hex)
    d = NewDelivery(hook, "http://127.0.0.1:9/hook", eid, "message.status", "{}")
    cb = NewDelivery(None, "http://127.0.0.1:9/cb", eid, "message.status", "{}")
    async with engine.begin() as conn:
        assert await WebhookRepository.enqueue(conn, [d, d, cb]) == 3
    async with engine.begin() as conn:
        await WebhookRepository.enqueue(conn, [d])
        rows = (
            await conn.execute(
                text("SELECT webhook_id, url, status FROM webhook_deliveries WHERE event_id = :e"),
                {"e": eid},
            )
        ).all()
    assert sorted((r[1], r[0], r[2]) for r in rows) == [
        ("http://127.0.0.1:9/cb", None, "pending"),
        ("http://127.0.0.1:9/hook", hook, "pending"),
    ]
