"""`GET /v1/status`: the whole gateway at a glance, for `smsgw status` and monitoring.

Routes (from `/v1/routes`), the depth and consumers of every job and inbound queue (a
passive declare on the broker), the oldest `queued` message of each route, the outbox
backlog and the webhook backlog, with `problems` (something is down: `ok` is false) and
`warnings` (worth a look, nothing down).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw_api.deps import AdminKey, AppState, StateDep
from smsgw_api.pagination import iso
from smsgw_api.routes.modems import routes as route_states
from smsgw_shared.store.schema import messages, outbox, webhook_deliveries, webhooks

router = APIRouter(tags=["routes"])

BROKER_TIMEOUT = 3.0  # seconds for every passive declare together
STORE_TIMEOUT = 5.0
ROUTE_FIELDS = (
    "route",
    "kind",
    "state",
    "connected",
    "signal_dbm",
    "operator",
    "queue_depth",
    "in_flight",
    "last_seen",
)

EXAMPLE: dict[str, Any] = {
    "ok": False,
    "checked_at": "2026-12-06T14:00:00+00:00",
    "problems": ["modem:m2 is disconnected"],
    "warnings": ["smsgw.jobs.smpp.b1.dlq holds 2 dead-lettered jobs"],
    "broker": {"connected": True},
    "store": {"reachable": True},
    "routes": [
        {
            "route": "modem:m1",
            "kind": "modem",
            "state": "connected",
            "connected": True,
            "signal_dbm": -71,
            "operator": "MTS",
            "queue_depth": 0,
            "in_flight": 0,
            "last_seen": "2026-12-06T13:59:59+00:00",
            "throttled": False,
        }
    ],
    "queues": [
        {
            "name": "smsgw.jobs.modem.pool",
            "route": "modem:*",
            "messages": 12,
            "consumers": 2,
            "dead_letters": 0,
            "queued": 12,
            "oldest_queued_at": "2026-12-06T13:59:40+00:00",
            "oldest_age_seconds": 20.0,
        }
    ],
    "outbox": {"backlog": 0, "oldest_at": None, "oldest_age_seconds": None},
    "webhooks": {
        "pending": 3,
        "retrying": 1,
        "dead_last_hour": 0,
        "oldest_pending_at": "2026-12-06T13:58:00+00:00",
        "oldest_age_seconds": 120.0,
    },
}


def _age(now: datetime, t: datetime | None) -> float | None:
    return round(max(0.0, (now - t).total_seconds()), 3) if t is not None else None


async def _queue_counts(state: AppState, names: list[str]) -> dict[str, tuple[int, int] | None]:
    """name → (messages, consumers) by passive declare; None for a queue that does not
    exist. A missing queue closes the channel: the next name gets a new one."""
    out: dict[str, tuple[int, int] | None] = {}
    ch = None
    try:
        for name in names:
            if ch is None or ch.is_closed:
                ch = await state.amqp.channel(confirms=False)
            try:
                q = await ch.declare_queue(name, passive=True)
            except Exception:
                out[name] = None
                ch = None
                continue
            r = q.declaration_result
            out[name] = (int(r.message_count or 0), int(r.consumer_count or 0))
    finally:
        if ch is not None and not ch.is_closed:
            with contextlib.suppress(Exception):
                await ch.close()
    return out


async def _store_figures(conn: AsyncConnection, exchanges: list[str]) -> dict[str, Any]:
    queued = {
        r.route: (int(r.n), r.oldest)
        for r in await conn.execute(
            select(
                messages.c.route,
                func.count().label("n"),
                func.min(messages.c.created_at).label("oldest"),
            )
            .where(messages.c.status == "queued")
            .group_by(messages.c.route)
        )
    }
    ob = (
        await conn.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(
                outbox.c.exchange.in_(exchanges)
            )
        )
    ).one()
    wd = webhook_deliveries.c
    wh = (
        await conn.execute(
            select(
                func.count(),
                func.count().filter(wd.attempts > 0),
                func.min(wd.created_at),
            ).where(wd.status == "pending")
        )
    ).one()
    # Deliveries given up on in the last hour, per active webhook (its (webhook_id,
    # created_at) index: no scan of the whole delivery log).
    active = select(webhooks.c.id).where(webhooks.c.active).scalar_subquery()
    dead = (
        await conn.execute(
            select(func.count()).where(
                wd.webhook_id.in_(active),
                wd.created_at > func.now() - timedelta(hours=1),
                wd.status == "dead",
            )
        )
    ).scalar_one()
    return {
        "queued": queued,
        "outbox": (int(ob[0]), ob[1]),
        "webhooks": (int(wh[0]), int(wh[1]), wh[2], int(dead)),
    }


@router.get(
    "/v1/status",
    summary="The gateway at a glance (admin)",
    responses={200: {"content": {"application/json": {"example": EXAMPLE}}}},
)
async def status(key: AdminKey, state: StateDep) -> dict[str, Any]:
    """Every route's live state; each route's job queue with its depth, consumers,
    dead-lettered jobs and oldest `queued` message; the inbound queues; the outbox backlog
    (jobs stored but not yet confirmed by the broker) and the webhook backlog (pending
    deliveries, how many are retrying, the oldest; deliveries given up on in the last
    hour). `ok` is false when something is down:
    `problems` says what (a route not connected, the broker or store unreachable, a queue
    holding jobs that no worker consumes, the inbound service not consuming); `warnings`
    lists what deserves a look (dead letters, failing webhook deliveries)."""
    now = datetime.now(UTC)
    problems: list[str] = []
    warnings: list[str] = []
    topo = state.amqp.topology

    store_ok = True
    try:
        async with asyncio.timeout(STORE_TIMEOUT):
            live = await route_states(key, state)
    except Exception:
        store_ok = False
        live = {"modems": [], "binds": []}
    routes = [
        {k: r.get(k) for k in ROUTE_FIELDS}
        | {"throttled": bool((r.get("details") or {}).get("throttled"))}
        for r in live["modems"] + live["binds"]
    ]
    for r in routes:
        if not r["connected"]:
            problems.append(f"{r['route']} is {r['state']}")

    job_routes = state.router.known_routes()
    queue_of = {topo.job_queue(r): r for r in job_routes}
    inbound = [topo.status_queue, topo.received_queue]
    names = [*queue_of, *(topo.dlq(q) for q in queue_of), *inbound]
    counts: dict[str, tuple[int, int] | None] = {}
    broker_ok = state.amqp.is_connected
    if broker_ok:
        try:
            async with asyncio.timeout(BROKER_TIMEOUT):
                counts = await _queue_counts(state, names)
        except Exception:
            broker_ok = False
    if not broker_ok:
        problems.append("the broker (RabbitMQ) is not reachable from the API")

    figures: dict[str, Any] = {"queued": {}, "outbox": (0, None), "webhooks": (0, 0, None, 0)}
    try:
        async with asyncio.timeout(STORE_TIMEOUT):
            async with state.engine.connect() as conn:
                figures = await _store_figures(conn, [e for e, _ in topo.exchanges()])
    except Exception:
        store_ok = False
    if not store_ok:
        problems.append("the store (PostgreSQL) is not reachable from the API")

    queues = []
    for name, route in queue_of.items():
        c = counts.get(name)
        dead = counts.get(topo.dlq(name))
        n_queued, oldest = figures["queued"].get(route, (0, None))
        queues.append(
            {
                "name": name,
                "route": route,
                "messages": c[0] if c else None,
                "consumers": c[1] if c else None,
                "dead_letters": dead[0] if dead else None,
                "queued": n_queued,
                "oldest_queued_at": iso(oldest),
                "oldest_age_seconds": _age(now, oldest),
            }
        )
        if c and c[0] > 0 and c[1] == 0:
            problems.append(f"{name} holds {c[0]} jobs and no worker consumes it")
        if dead and dead[0] > 0:
            warnings.append(f"{topo.dlq(name)} holds {dead[0]} dead-lettered jobs")
    for name in inbound:
        c = counts.get(name)
        queues.append(
            {
                "name": name,
                "route": None,
                "messages": c[0] if c else None,
                "consumers": c[1] if c else None,
            }
        )
        if broker_ok and (c is None or c[1] == 0):
            problems.append(f"{name}: the inbound service is not consuming")

    ob_count, ob_oldest = figures["outbox"]
    wh_pending, wh_retrying, wh_oldest, wh_dead = figures["webhooks"]
    if wh_retrying:
        warnings.append(f"{wh_retrying} webhook deliveries are being retried")
    if wh_dead:
        warnings.append(f"{wh_dead} webhook deliveries failed for good in the last hour")
    return {
        "ok": not problems,
        "checked_at": now.isoformat(),
        "problems": problems,
        "warnings": warnings,
        "broker": {"connected": broker_ok},
        "store": {"reachable": store_ok},
        "routes": routes,
        "queues": queues,
        "outbox": {
            "backlog": ob_count,
            "oldest_at": iso(ob_oldest),
            "oldest_age_seconds": _age(now, ob_oldest),
        },
        "webhooks": {
            "pending": wh_pending,
            "retrying": wh_retrying,
            "dead_last_hour": wh_dead,
            "oldest_pending_at": iso(wh_oldest),
            "oldest_age_seconds": _age(now, wh_oldest),
        },
    }
