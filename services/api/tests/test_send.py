"""POST /v1/messages: the happy paths and what lands in the queues and the store."""

from __future__ import annotations

import json

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.messages import SendJob

from .conftest import drain


async def test_send_one_is_stored_and_published(api, admin_headers, amqp: AmqpConnection):
    r = await api.post(
        "/v1/messages",
        json={"to": "89203048606", "text": "Hello", "reference": "r-1"},
        headers=admin_headers,
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["batch_id"]
    [m] = body["messages"]
    assert m["to"] == "+79203048606"
    assert m["status"] == "queued"
    assert m["parts"] == 1 and m["encoding"] == "gsm7"
    assert m["route"] == "modem:*"

    [raw] = await drain(amqp, amqp.topology.job_queue("modem:*"), 1)
    job = SendJob.from_bytes(raw)
    assert job.message_id == m["id"] and job.to == "+79203048606" and job.text == "Hello"

    got = await api.get(f"/v1/messages/{m['id']}", headers=admin_headers)
    assert got.status_code == 200
    detail = got.json()
    assert detail["status"] == "queued" and detail["reference"] == "r-1"
    assert [h["state"] for h in detail["history"]] == ["queued"]


async def test_many_recipients_routing_and_invalid_ones(api, admin_headers, amqp):
    r = await api.post(
        "/v1/messages",
        json={
            "to": ["+79160001234", "+79210001234", "12", "+79210001234"],
            "text": "Привет, мир! " * 6,
        },
        headers=admin_headers,
    )
    assert r.status_code == 202, r.text
    msgs = r.json()["messages"]
    assert [m["status"] for m in msgs] == ["queued", "queued", "rejected", "rejected"]
    assert msgs[0]["route"] == "smpp:b1"  # the +7916 rule
    assert msgs[1]["route"] == "modem:*"  # the default
    assert msgs[2]["error_code"] == "invalid_number"
    assert msgs[3]["error_code"] == "duplicate_recipient"
    assert msgs[0]["encoding"] == "ucs2" and msgs[0]["parts"] == 2
    assert len(await drain(amqp, amqp.topology.job_queue("smpp:b1"), 1)) == 1
    assert len(await drain(amqp, amqp.topology.job_queue("modem:*"), 1)) == 1


async def test_explicit_route_and_options(api, admin_headers, amqp):
    r = await api.post(
        "/v1/messages",
        json={
            "to": "+79160001234",
            "text": "x",
            "route": "modem:m2",
            "from": "MyShop",
            "flash": True,
            "validity": 3600,
        },
        headers=admin_headers,
    )
    assert r.status_code == 202, r.text
    [raw] = await drain(amqp, amqp.topology.job_queue("modem:m2"), 1)
    job = SendJob.from_bytes(raw)
    assert job.route == "modem:m2" and job.sender == "MyShop" and job.flash and job.validity == 3600


async def test_translit_and_substitution(api, admin_headers):
    r = await api.post(
        "/v1/messages",
        json={"to": "+79210001234", "text": "Привет — «мир» №5", "translit": True},
        headers=admin_headers,
    )
    assert r.status_code == 202, r.text
    assert r.json()["messages"][0]["encoding"] == "gsm7"
    r = await api.post(
        "/v1/messages/preview",
        json={"text": "“Hello” — world", "substitute": True},
        headers=admin_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["encoding"] == "gsm7"
    r = await api.post("/v1/messages/preview", json={"text": "“Hello”"}, headers=admin_headers)
    assert r.json()["encoding"] == "ucs2" and r.json()["ucs2_chars"]


async def test_list_filters_and_cursor(api, admin_headers):
    for i in range(5):
        r = await api.post(
            "/v1/messages",
            json={"to": "+79210001234", "text": f"m{i}", "reference": "listing"},
            headers=admin_headers,
        )
        assert r.status_code == 202
    seen: list[str] = []
    cursor = None
    while True:
        params = {"reference": "listing", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await api.get("/v1/messages", params=params, headers=admin_headers)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [m["text"] for m in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["m4", "m3", "m2", "m1", "m0"]
    r = await api.get("/v1/messages", params={"status": "bogus"}, headers=admin_headers)
    assert r.status_code == 422
    r = await api.get("/v1/messages", params={"cursor": "!!!"}, headers=admin_headers)
    assert r.status_code == 400


async def test_openapi_and_health(api):
    r = await api.get("/openapi.json")
    assert r.status_code == 200
    paths = json.loads(r.text)["paths"]
    assert "/v1/messages" in paths and "/v1/keys" in paths
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    metrics = await api.get("/metrics")
    assert "smsgw_api_requests_total" in metrics.text
