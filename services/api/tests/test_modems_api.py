"""USSD/balance request-reply and the routes view, without a modem worker answering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.store.repos.route_state import RouteStateRepository

from .conftest import running_app


async def test_unknown_modem_is_404(api, admin_headers):
    r = await api.get("/v1/modems/zz/balance", headers=admin_headers)
    assert r.status_code == 404 and r.json()["code"] == "unknown_modem"


async def test_no_worker_is_503(api, admin_headers):
    r = await api.post(
        "/v1/modems/m1/ussd", json={"code": "*100#", "timeout": 1}, headers=admin_headers
    )
    assert r.status_code == 503 and r.json()["code"] == "modem_worker_unavailable"


async def test_worker_that_does_not_answer_is_504(api, admin_headers, amqp: AmqpConnection):
    await amqp.declare(amqp.topology.rpc_queues("m2"))  # a worker's queue, nobody consuming
    r = await api.post(
        "/v1/modems/m2/ussd", json={"code": "*100#", "timeout": 0.5}, headers=admin_headers
    )
    assert r.status_code == 504 and r.json()["code"] == "modem_timeout"


async def test_bad_ussd_bodies(api, admin_headers):
    for body in (
        {"code": "rm -rf"},
        {"code": ""},
        {"code": "*100#", "timeout": 0},
        {"code": "*100#", "x": 1},
    ):
        r = await api.post("/v1/modems/m1/ussd", json=body, headers=admin_headers)
        assert r.status_code == 422, body


async def test_routes_without_heartbeats(api, admin_headers):
    r = await api.get("/v1/routes", headers=admin_headers)
    assert r.status_code == 200
    body = r.json()
    assert [m["id"] for m in body["modems"]] == ["m1", "m2"]
    assert body["binds"][0]["id"] == "b1" and body["binds"][0]["state"] == "unknown"
    assert body["routing"]["rules"] == [{"prefix": "+7916", "to": "smpp:b1"}]


async def test_balance_worker_that_does_not_answer_is_504(api_settings, amqp):
    quick = api_settings.model_copy(
        update={"api": api_settings.api.model_copy(update={"rpc_timeout": 0.5})}
    )
    async with running_app(quick) as (_, client):
        await amqp.declare(amqp.topology.rpc_queues("m2"))  # nobody consuming
        headers = {"Authorization": f"Bearer {quick.bootstrap_api_key}"}
        r = await client.get("/v1/modems/m2/balance", headers=headers)
    assert r.status_code == 504 and r.json()["code"] == "modem_timeout"


async def test_routes_show_the_last_heartbeats(api, admin_headers, app_state):
    """Signal, operator, queue depth and last seen from each route's last heartbeat; a
    route whose heartbeats stopped is `stale` and not connected."""
    now = datetime.now(UTC)
    rows = [
        {
            "route": "modem:m1",
            "kind": "modem",
            "state": "connected",
            "connected": True,
            "signal_dbm": -71,
            "operator": "MegaFon",
            "queue_depth": 3,
            "in_flight": 1,
            "details": {"imei": "3520990000000001"},
            "last_seen": now,
        },
        {
            "route": "smpp:b1",
            "kind": "smpp",
            "state": "bound",
            "connected": True,
            "queue_depth": 0,
            "last_seen": now - timedelta(hours=1),
        },
    ]
    try:
        async with app_state.engine.begin() as conn:
            for row in rows:
                await RouteStateRepository.upsert(conn, row)
        body = (await api.get("/v1/routes", headers=admin_headers)).json()
        m1 = next(m for m in body["modems"] if m["id"] == "m1")
        assert (m1["state"], m1["connected"], m1["signal_dbm"], m1["operator"]) == (
            "connected",
            True,
            -71,
            "MegaFon",
        )
        assert (m1["queue_depth"], m1["in_flight"]) == (3, 1)
        assert datetime.fromisoformat(m1["last_seen"]) == now
        b1 = body["binds"][0]
        assert (b1["state"], b1["connected"]) == ("stale", False)
        m2 = next(m for m in body["modems"] if m["id"] == "m2")
        assert (m2["state"], m2["last_seen"]) == ("unknown", None)
    finally:
        async with app_state.engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM route_state WHERE route IN ('modem:m1', 'smpp:b1')")
            )
