"""POST /v1/messages: the happy paths and what lands in the queues and the store."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

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
    assert detail["history"][0]["at"] and detail["history"][0]["reported_at"] is None


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
    detail = paths["/v1/messages/{message_id}"]["get"]["responses"]["200"]["content"]
    assert detail["application/json"]["schema"] == {"$ref": "#/components/schemas/MessageDetail"}
    listing = paths["/v1/messages"]["get"]["responses"]["200"]["content"]
    assert listing["application/json"]["schema"] == {"$ref": "#/components/schemas/MessageList"}
    entry = json.loads(r.text)["components"]["schemas"]["HistoryEntry"]["properties"]
    assert {"at", "reported_at"} <= set(entry)
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    metrics = await api.get("/metrics")
    assert "smsgw_api_requests_total" in metrics.text


async def test_openapi_documents_auth_errors_and_examples(api):
    """Every /v1 operation says how to authenticate and which problem details it may
    answer (with an example each); every request body has an example."""
    spec = (await api.get("/openapi.json")).json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey", "basic"}
    schemas = spec["components"]["schemas"]
    assert schemas["Problem"]["required"] == ["type", "title", "status", "code"]
    operations = [
        (path, method, op)
        for path, ops in spec["paths"].items()
        if path.startswith("/v1/")
        for method, op in ops.items()
        if not any(tag.startswith("compat") for tag in op.get("tags", []))  # their own errors
    ]
    assert len(operations) > 20
    for path, method, op in operations:
        assert op["security"], (method, path)
        for status in ("401", "403", "429", "503"):
            problem = op["responses"][status]["content"]["application/problem+json"]
            assert problem["example"]["status"] == int(status), (method, path, status)
        if "{" in path:
            assert "404" in op["responses"], (method, path)
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
            assert schemas[ref].get("examples"), (method, path, ref)
    send = spec["paths"]["/v1/messages"]["post"]["responses"]
    assert "Idempotency-Key" in send["409"]["description"]
    assert send["429"]["headers"]["Retry-After"]


async def test_list_by_status_recipient_and_time(api, admin_headers, app_state):
    ref = "filters-" + uuid.uuid4().hex[:6]
    sent = []
    for to in ("+79210005551", "89210005552", "+79210005552"):
        r = await api.post(
            "/v1/messages", json={"to": to, "text": "f", "reference": ref}, headers=admin_headers
        )
        sent.append(r.json()["messages"][0]["id"])
    async with app_state.engine.begin() as conn:
        await conn.execute(
            text("UPDATE messages SET status = 'delivered' WHERE id = :i"), {"i": sent[0]}
        )

    async def ids(**params):
        r = await api.get(
            "/v1/messages", params={"reference": ref, **params}, headers=admin_headers
        )
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["data"]]

    assert await ids(status="delivered") == [sent[0]]
    assert await ids(status="queued") == [sent[2], sent[1]]
    # the recipient filter takes a number as a send does (normalised to E.164)
    assert await ids(to="89210005552") == [sent[2], sent[1]]
    now = datetime.now(UTC)
    assert len(await ids(since=(now - timedelta(minutes=5)).isoformat())) == 3
    assert await ids(since=(now + timedelta(minutes=5)).isoformat()) == []
    assert await ids(until=(now - timedelta(minutes=5)).isoformat()) == []
    bad = await api.get("/v1/messages", params={"to": "12ab"}, headers=admin_headers)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_number"
    for path in ("/v1/messages", "/v1/inbound"):
        naive = await api.get(path, params={"since": "2026-01-01T10:00:00"}, headers=admin_headers)
        assert naive.status_code == 422, naive.text
        assert (naive.json()["code"], naive.json()["field"]) == ("invalid_time", "since")
