"""No loss: broker down → accepted and published later; store down → 503, never 500."""

from __future__ import annotations

import asyncio
import collections
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import text

from smsgw_api.services import ingest, pipeline
from smsgw_shared.amqp import AmqpConnection, Outgoing
from smsgw_shared.messages import CancelNotice, SendJob
from smsgw_shared.testing import free_port
from smsgw_shared.testing.helpers import wait_for
from smsgw_shared.testing.plugin import delete_namespace

from .conftest import drain, running_app


async def test_broker_down_accepts_and_relays_when_it_returns(api_settings, amqp):
    dead_broker = api_settings.model_copy(
        update={"amqp_url": f"amqp://guest:guest@127.0.0.1:{free_port()}/"}
    )
    async with running_app(dead_broker, wait_broker=False) as (app, client):
        headers = {"Authorization": f"Bearer {api_settings.bootstrap_api_key}"}
        r = await client.post(
            "/v1/messages",
            json={"to": ["+79210001234", "+79210001235"], "text": "while down"},
            headers=headers,
        )
        assert r.status_code == 202, r.text
        assert {m["status"] for m in r.json()["messages"]} == {"queued"}
        ids = {m["id"] for m in r.json()["messages"]}
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "broker" in ready.json()["failed"]
        await asyncio.sleep(0.5)
        async with app.state.smsgw.engine.connect() as conn:
            backlog = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        assert backlog >= 2
    # The broker "returns": an API process with a working broker relays the outbox.
    async with running_app(api_settings) as (app, _):
        got = await drain(amqp, amqp.topology.job_queue("modem:*"), 2, timeout=15)
        async with app.state.smsgw.engine.connect() as conn:
            stored = {
                str(r.id): r
                for r in await conn.execute(
                    text("SELECT * FROM messages WHERE id = ANY(:ids)"), {"ids": list(ids)}
                )
            }
    jobs = [SendJob.from_bytes(b) for b in got]
    assert {j.message_id for j in jobs} == ids
    # The outbox held no body: each job was made again from its message, as accepted.
    for job in jobs:
        row = stored[job.message_id]
        assert (job.job_id, job.batch_id) == (str(row.job_id), str(row.batch_id))
        assert (job.to, job.text, job.route, job.encoding) == (
            row.to_number,
            "while down",
            "modem:*",
            "gsm7",
        )


async def test_relay_sends_no_job_a_message_no_longer_needs(api_settings, amqp):
    """A job left in the outbox whose message was since taken by a worker, expired or
    removed is not published again; the one still queued is, and the outbox is empty."""
    dead_broker = api_settings.model_copy(
        update={"amqp_url": f"amqp://guest:guest@127.0.0.1:{free_port()}/"}
    )
    to = ["+79210001231", "+79210001232", "+79210001233", "+79210001234"]
    async with running_app(dead_broker, wait_broker=False) as (app, client):
        headers = {"Authorization": f"Bearer {api_settings.bootstrap_api_key}"}
        r = await client.post("/v1/messages", json={"to": to, "text": "x"}, headers=headers)
        assert r.status_code == 202, r.text
        ids = [m["id"] for m in r.json()["messages"]]
        async with app.state.smsgw.engine.begin() as conn:
            for mid, status in zip(ids[:2], ("sending", "expired"), strict=True):
                await conn.execute(
                    text("UPDATE messages SET status = :s WHERE id = :id"),
                    {"s": status, "id": mid},
                )
            await conn.execute(text("DELETE FROM messages WHERE id = :id"), {"id": ids[2]})
    async with running_app(api_settings) as (app, _):
        got = await drain(amqp, amqp.topology.job_queue("modem:*"), 2, timeout=5)
        assert [SendJob.from_bytes(b).message_id for b in got] == [ids[3]]
        async with app.state.smsgw.engine.connect() as conn:
            left = await conn.execute(
                text("SELECT count(*) FROM outbox WHERE message_id = ANY(:ids)"), {"ids": ids}
            )
            assert left.scalar_one() == 0


async def test_a_broker_that_lost_its_topology_gets_it_back_and_nothing_is_lost(api_settings, amqp):
    """RabbitMQ reset under a running API (its exchanges and queues gone): sends are still
    accepted, the API declares its topology again, and every job reaches its queue."""
    async with running_app(api_settings) as (app, client):
        headers = {"Authorization": f"Bearer {api_settings.bootstrap_api_key}"}
        send = {"to": "+79210001234", "text": "before"}
        assert (await client.post("/v1/messages", json=send, headers=headers)).status_code == 202
        [first] = await drain(amqp, amqp.topology.job_queue("modem:*"), 1)
        await delete_namespace(amqp, api_settings)
        ids = {SendJob.from_bytes(first).message_id}
        for text_ in ("after 1", "after 2"):
            r = await client.post("/v1/messages", json={**send, "text": text_}, headers=headers)
            assert r.status_code == 202, r.text
            ids.add(r.json()["messages"][0]["id"])
        got = await drain(amqp, amqp.topology.job_queue("modem:*"), 2, timeout=20)
        assert {SendJob.from_bytes(b).message_id for b in [first, *got]} == ids
        # A job is in its queue a moment before its outbox row goes (the relay deletes it
        # once the broker's confirm is back and commits after): wait for the outbox.
        mine = text("SELECT count(*) FROM outbox WHERE exchange LIKE :ns")

        async def outbox_empty() -> bool:
            async with app.state.smsgw.engine.connect() as conn:
                left = await conn.execute(mine, {"ns": f"{api_settings.namespace}.%"})
                return bool(left.scalar_one() == 0)

        await wait_for(outbox_empty, timeout=10)


async def test_store_down_is_503_with_retry_after(api_settings, amqp):
    dead_store = api_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/x"}
    )
    async with running_app(dead_store) as (_, client):
        headers = {"Authorization": f"Bearer {api_settings.bootstrap_api_key}"}
        r = await client.post(
            "/v1/messages", json={"to": "+79210001234", "text": "x"}, headers=headers
        )
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "5"
        assert r.json()["code"] == "store_unavailable"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "store" in ready.json()["failed"]
        assert (await client.get("/healthz")).status_code == 200


async def test_schedule_then_release(api, admin_headers, amqp):
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    r = await api.post(
        "/v1/messages",
        json={"to": "+79210001234", "text": "later", "send_at": soon},
        headers=admin_headers,
    )
    assert r.status_code == 202
    [m] = r.json()["messages"]
    assert m["status"] == "scheduled"
    assert await drain(amqp, amqp.topology.job_queue("modem:*"), 1, timeout=0.5) == []
    [raw] = await drain(amqp, amqp.topology.job_queue("modem:*"), 1, timeout=10)
    assert SendJob.from_bytes(raw).message_id == m["id"]
    detail = (await api.get(f"/v1/messages/{m['id']}", headers=admin_headers)).json()
    assert detail["status"] == "queued"
    assert [h["state"] for h in detail["history"]] == ["scheduled", "queued"]


async def test_cancel_scheduled_and_conflicts(api, admin_headers, app_state, amqp):
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await api.post(
        "/v1/messages",
        json={"to": "+79210001234", "text": "never", "send_at": later},
        headers=admin_headers,
    )
    mid = r.json()["messages"][0]["id"]
    c = await api.delete(f"/v1/messages/{mid}", headers=admin_headers)
    assert c.status_code == 200 and c.json()["status"] == "canceled"
    again = await api.delete(f"/v1/messages/{mid}", headers=admin_headers)
    assert again.status_code == 409 and again.json()["message_status"] == "canceled"
    # A message being sent can no longer be canceled.
    r = await api.post(
        "/v1/messages", json={"to": "+79210001234", "text": "now"}, headers=admin_headers
    )
    mid2 = r.json()["messages"][0]["id"]
    async with app_state.engine.begin() as conn:
        await conn.execute(text("UPDATE messages SET status='sending' WHERE id=:i"), {"i": mid2})
    c = await api.delete(f"/v1/messages/{mid2}", headers=admin_headers)
    assert c.status_code == 409 and c.json()["code"] == "not_cancelable"


async def test_cancel_races_with_release(api, admin_headers, app_state, amqp):
    """A cancel sent as the scheduler releases the message: both orders are allowed, and
    either way the workers are never left with a job to send.

    - the cancel won: `scheduled → canceled`, no outbox row, no job published;
    - the release won: `scheduled → queued → canceled`, and a cancel notice goes out, so a
      worker skips the job if the relay published it before the cancel (the relay skips a
      message no longer `queued`: then no job at all).

    There are no workers here, so nothing passes `queued` and the cancel is never a 409."""
    t = amqp.topology
    ch = await amqp.connection.channel()
    notices = await ch.declare_queue(exclusive=True, auto_delete=True)
    await notices.bind(t.events_exchange, t.CANCEL_KEY)
    try:
        soon = (datetime.now(UTC) + timedelta(seconds=1.2)).isoformat()
        r = await api.post(
            "/v1/messages",
            json={"to": "+79210001234", "text": "race", "send_at": soon},
            headers=admin_headers,
        )
        mid = r.json()["messages"][0]["id"]
        await asyncio.sleep(1.2)
        c = await api.delete(f"/v1/messages/{mid}", headers=admin_headers)
        assert c.status_code == 200, c.text
        assert c.json() == {"id": mid, "status": "canceled"}
        detail = (await api.get(f"/v1/messages/{mid}", headers=admin_headers)).json()
        assert detail["status"] == "canceled"
        history = [h["state"] for h in detail["history"]]
        async with app_state.engine.connect() as conn:
            left = await conn.execute(
                text("SELECT count(*) FROM outbox WHERE message_id=:i"), {"i": mid}
            )
            assert left.scalar_one() == 0
        jobs = [
            SendJob.from_bytes(b).message_id
            for b in await drain(amqp, t.job_queue("modem:*"), 1, timeout=2)
        ]
        if history == ["scheduled", "canceled"]:  # the cancel won
            assert jobs == []
        else:  # the release won
            assert history == ["scheduled", "queued", "canceled"], history
            assert jobs in ([], [mid])
            msg = None
            for _ in range(100):
                msg = await notices.get(no_ack=True, fail=False)
                if msg is not None:
                    break
                await asyncio.sleep(0.05)
            assert msg is not None, "no cancel notice for a released job"
            assert CancelNotice.from_bytes(msg.body).message_id == mid
    finally:
        await ch.close()


async def test_relay_keeps_a_row_it_cannot_publish_and_sends_the_others(app_state, amqp):
    # A row for an exchange that does not exist (an operator renamed the namespace, say)
    # must neither block the rows behind it nor take the API's broker connection down.
    t = amqp.topology
    reconnects: list[object] = []
    app_state.amqp.connection.reconnect_callbacks.add(lambda *a: reconnects.append(a))
    missing = f"{t.ns}.missing"
    good = [f'{{"relay-test":{i}}}' for i in range(2)]
    rows = [
        (missing, "modem.pool", '{"relay-test":"poison"}'),
        *[(t.jobs_exchange, t.job_routing_key("modem:*"), b) for b in good],
    ]
    async with app_state.engine.begin() as conn:
        for exchange, key, body in rows:
            await conn.execute(
                text("INSERT INTO outbox (exchange, routing_key, body) VALUES (:e, :k, :b)"),
                {"e": exchange, "k": key, "b": body},
            )
    try:
        got = await drain(amqp, t.job_queue("modem:*"), 2, timeout=10)
        assert sorted(b.decode() for b in got) == good
        async with app_state.engine.connect() as conn:
            attempts, error = (
                await conn.execute(
                    text("SELECT attempts, last_error FROM outbox WHERE exchange = :e"),
                    {"e": missing},
                )
            ).one()
        assert attempts >= 1 and "does not exist" in error
        assert reconnects == []
        await app_state.publisher.publish(
            Outgoing(t.jobs_exchange, t.job_routing_key("modem:*"), b'{"after":1}')
        )
        assert await drain(amqp, t.job_queue("modem:*"), 1, timeout=5) == [b'{"after":1}']
    finally:
        async with app_state.engine.begin() as conn:
            await conn.execute(text("DELETE FROM outbox WHERE exchange = :e"), {"e": missing})


async def test_cancel_a_queued_message_tells_the_workers(api, admin_headers, amqp):
    """A queued message (its job may sit in a queue) is canceled, and a cancel notice goes
    to the workers, who skip its job; canceling it again is a 409."""
    t = amqp.topology
    ch = await amqp.connection.channel()
    notices = await ch.declare_queue(exclusive=True, auto_delete=True)
    await notices.bind(t.events_exchange, t.CANCEL_KEY)
    try:
        r = await api.post(
            "/v1/messages", json={"to": "+79210001234", "text": "stop"}, headers=admin_headers
        )
        mid = r.json()["messages"][0]["id"]
        c = await api.delete(f"/v1/messages/{mid}", headers=admin_headers)
        assert c.status_code == 200 and c.json() == {"id": mid, "status": "canceled"}
        msg = None
        for _ in range(100):
            msg = await notices.get(no_ack=True, fail=False)
            if msg is not None:
                break
            await asyncio.sleep(0.05)
        assert msg is not None
        assert CancelNotice.from_bytes(msg.body).message_id == mid
        detail = (await api.get(f"/v1/messages/{mid}", headers=admin_headers)).json()
        assert [h["state"] for h in detail["history"]] == ["queued", "canceled"]
        again = await api.delete(f"/v1/messages/{mid}", headers=admin_headers)
        assert again.status_code == 409 and again.json()["code"] == "not_cancelable"
    finally:
        await ch.close()


async def _rabbitmqctl(*args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@asynccontextmanager
async def memory_alarm() -> AsyncIterator[None]:
    """RabbitMQ's memory alarm, a real broker stall: it stops reading from connections that
    publish, so their publishes wait unconfirmed until it clears. The watermark is put back
    whatever happens."""
    before = await _rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    absolute = re.fullmatch(r"\{absolute,(\d+)\}", before)
    restore = ["absolute", absolute.group(1)] if absolute else [before]
    if restore == ["absolute", "10"]:  # left by a run killed inside this helper
        restore = ["0.4"]
    await _rabbitmqctl("set_vm_memory_high_watermark", "absolute", "10")
    try:
        yield
    finally:
        await _rabbitmqctl("set_vm_memory_high_watermark", *restore)


async def _send_behind_a_stalled_publish(
    app: FastAPI, client: httpx.AsyncClient, key: str, numbers: list[str]
) -> list[str]:
    """One send each, the rest once the dispatcher has taken the first for its (stalling)
    publish, so they queue behind it; their message ids."""
    dispatcher = app.state.smsgw.ingestor.dispatcher
    ids: list[str] = []
    for i, to in enumerate(numbers):
        r = await client.post(
            "/v1/messages",
            json={"to": to, "text": "stall"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["messages"][0]["id"])
        if i == 0:
            await wait_for(lambda: _async_true(dispatcher.waiting == 0))
    return ids


async def _async_true(value: bool) -> bool:
    return value


def _handed_to_relay() -> float:
    return REGISTRY.get_sample_value("smsgw_api_jobs_handed_to_relay_total") or 0.0


async def _ready_count(amqp: AmqpConnection, queue: str) -> int:
    conn = await aio_pika.connect(amqp.url)
    try:
        q = await (await conn.channel()).declare_queue(queue, passive=True)
        return int(q.declaration_result.message_count or 0)
    finally:
        await conn.close()


async def _held_in_doubt(app: FastAPI, ids: list[str], n: int) -> bool:
    """`n` of these messages' outbox rows are held far ahead (their publish in doubt)."""
    async with app.state.smsgw.engine.connect() as conn:
        held = await conn.execute(
            text(
                "SELECT count(*) FROM outbox WHERE message_id = ANY(CAST(:ids AS uuid[]))"
                " AND available_at > now() + interval '60 seconds'"
            ),
            {"ids": ids},
        )
        return held.scalar_one() == n


async def _outbox_settled(app: FastAPI) -> bool:
    """Nothing left to publish: no outbox row, and nothing in the dispatcher's hands."""
    async with app.state.smsgw.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
    return rows == 0 and app.state.smsgw.ingestor.dispatcher.backlog == 0


async def test_jobs_queued_past_their_time_go_to_the_relay_not_out_twice(
    api_settings, amqp, monkeypatch
):
    """With the broker stalled, jobs queued behind a stalled publish until the relay may
    take them are left to the relay: published by the API as well, each would go out twice
    (the stalled publishes reach the broker when it recovers)."""
    monkeypatch.setattr(ingest, "HOT_PATH_GRACE_S", 4)  # the relay's 4 s after the commit
    key = api_settings.bootstrap_api_key
    async with running_app(api_settings) as (app, client):
        dispatcher = app.state.smsgw.ingestor.dispatcher
        dispatcher.publish_timeout, dispatcher.max_queued = 2.5, 1.0
        handed = _handed_to_relay()
        queue = amqp.topology.job_queue("modem:*")
        async with memory_alarm():
            ids = await _send_behind_a_stalled_publish(
                app, client, key, ["+79210001234", "+79210001235", "+79210001236"]
            )
            # The first publish times out at 2.5 s; the two behind it have queued for
            # longer than 1 s by then (and would be the relay's too from 4 s).
            await wait_for(lambda: _async_true(_handed_to_relay() - handed == 2), timeout=30)
        # Every publish confirmed and nothing left to publish: any second copy is queued
        # (the stalled publish went out on the same channel ahead of the relay's).
        await wait_for(lambda: _outbox_settled(app), timeout=30)
        got = await drain(amqp, queue, await _ready_count(amqp, queue), timeout=20)
        sent = collections.Counter(SendJob.from_bytes(b).message_id for b in got)
    assert set(sent) == set(ids)
    # The first job's timed-out publish reached the broker after the stall, and the relay
    # did not send it again while it was in doubt. The two left to the relay went out once
    # each.
    assert all(n == 1 for n in sent.values()), sent
    assert _handed_to_relay() - handed == 2


async def test_a_long_stall_does_not_pile_up_copies_of_a_job(api_settings, amqp, monkeypatch):
    """A relay publish that times out on a stalled broker is not lost: it reaches the broker
    when the stall ends. Published again on every pass while the broker stalls, each job
    would be queued once a pass; the relay publishes a job again only once its last
    publish has failed, not while that publish may still arrive."""
    monkeypatch.setattr(ingest, "HOT_PATH_GRACE_S", 3)
    monkeypatch.setattr(pipeline.OutboxRelay, "publish_timeout", 1.0)
    key = api_settings.bootstrap_api_key
    async with running_app(api_settings) as (app, client):
        dispatcher = app.state.smsgw.ingestor.dispatcher
        dispatcher.publish_timeout, dispatcher.max_queued = 1.0, 0.5
        queue = amqp.topology.job_queue("modem:*")
        async with memory_alarm():
            ids = await _send_behind_a_stalled_publish(
                app, client, key, ["+79210001234", "+79210001235", "+79210001236"]
            )
            # Each job's publish timed out (the first the API's, the others the relay's) and
            # its row is held: no relay pass takes it again while the broker stalls.
            await wait_for(lambda: _held_in_doubt(app, ids, 3), timeout=30)
        await wait_for(lambda: _outbox_settled(app), timeout=30)
        got = await drain(amqp, queue, await _ready_count(amqp, queue), timeout=20)
        sent = collections.Counter(SendJob.from_bytes(b).message_id for b in got)
    assert set(sent) == set(ids)
    # The first job's stalled publish was the API's, the others' the relay's: each reached
    # the broker when the stall ended, and nothing published them again meanwhile.
    assert all(n == 1 for n in sent.values()), sent


async def test_a_publish_in_doubt_on_a_connection_the_broker_drops_is_published_again(
    api_settings, amqp, monkeypatch
):
    """A job whose publish is in doubt is not held back for good: when the broker drops the
    connection it was written on (its frames unread, behind the stall), that publish is
    answered as failed and the relay publishes the job again."""
    monkeypatch.setattr(ingest, "HOT_PATH_GRACE_S", 3)
    monkeypatch.setattr(pipeline.OutboxRelay, "publish_timeout", 1.0)
    key = api_settings.bootstrap_api_key
    async with running_app(api_settings) as (app, client):
        dispatcher = app.state.smsgw.ingestor.dispatcher
        dispatcher.publish_timeout = 1.0
        queue = amqp.topology.job_queue("modem:*")
        async with memory_alarm():
            ids = await _send_behind_a_stalled_publish(app, client, key, ["+79210001234"])
            await wait_for(lambda: _async_true(len(dispatcher.in_doubt) == 1), timeout=10)
            await _rabbitmqctl("close_all_connections", "test: a stalled connection dropped")
        await wait_for(lambda: _outbox_settled(app), timeout=30)
        got = await drain(amqp, queue, await _ready_count(amqp, queue), timeout=20)
        sent = collections.Counter(SendJob.from_bytes(b).message_id for b in got)
    assert sent == {ids[0]: 1}, sent


async def test_jobs_never_taken_for_publishing_at_stop_are_the_relays_at_once(api_settings, amqp):
    """Stopped while the broker stalls, the API makes the jobs it never began to publish
    due for the relay now (in whichever API process runs it), not at the end of their grace;
    the one caught in a stalled publish keeps its grace (it may yet reach the broker)."""
    settings = api_settings.model_copy(update={"shutdown_timeout": 1.0})  # a short drain
    key = api_settings.bootstrap_api_key
    async with memory_alarm():
        async with running_app(settings) as (app, client):
            ids = await _send_behind_a_stalled_publish(
                app, client, key, ["+79210001234", "+79210001235"]
            )
            engine = app.state.smsgw.engine
        async with engine.connect() as conn:
            rows = {
                str(r.message_id): r
                for r in await conn.execute(
                    text(
                        "SELECT message_id, available_at <= now() AS due, last_error FROM outbox"
                        " WHERE message_id = ANY(:ids)"
                    ),
                    {"ids": ids},
                )
            }
        await engine.dispose()
    assert set(rows) == set(ids)
    assert not rows[ids[0]].due  # in a publish when the API stopped: its grace stands
    assert rows[ids[1]].due and "stopped before publishing" in rows[ids[1]].last_error
