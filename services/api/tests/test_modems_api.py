"""USSD/balance request-reply and the routes view, without a modem worker answering."""

from __future__ import annotations

from smsgw_shared.amqp import AmqpConnection


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
