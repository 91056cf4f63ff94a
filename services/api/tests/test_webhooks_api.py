"""`/v1/webhooks` through the real app: create (secret once), ownership, rotation, SSRF
refusal, deliveries and redelivery."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import delete

from smsgw_api.deps import AppState
from smsgw_inbound.events import LogEvent, record_events, stable_id
from smsgw_shared.messages import utcnow
from smsgw_shared.store.schema import webhook_deliveries, webhooks

from .conftest import running_app


async def emit_received(engine: Any, n: int) -> None:
    """Log `n` message.received events, as the inbound service would."""
    events = [
        LogEvent(
            stable_id("api-test", uuid.uuid4()), "message.received", {"to": None, "n": i}, utcnow()
        )
        for i in range(n)
    ]
    async with engine.begin() as conn:
        await record_events(conn, events)


async def _clear(state: AppState) -> None:
    async with state.engine.begin() as conn:
        await conn.execute(delete(webhook_deliveries))
        await conn.execute(delete(webhooks))


async def test_create_list_rotate_delete(
    api: httpx.AsyncClient, admin_headers: dict[str, str], make_key: Any, app_state: AppState
) -> None:
    await _clear(app_state)
    body = {
        "url": "http://127.0.0.1:9/hook",
        "events": ["message.status.delivered", "message.received"],
    }
    r = await api.post("/v1/webhooks", json=body, headers=admin_headers)
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_")
    assert hook["events"] == ["message.received", "message.status.delivered"]
    r = await api.get(f"/v1/webhooks/{hook['id']}", headers=admin_headers)
    assert r.status_code == 200 and "secret" not in r.json()
    r = await api.post(f"/v1/webhooks/{hook['id']}/rotate", headers=admin_headers)
    assert r.status_code == 200 and r.json()["secret"] not in (None, hook["secret"])
    # A key that may only read may not manage webhooks at all.
    _, reader = await make_key(scopes=["read", "send"])
    r = await api.get("/v1/webhooks", headers=reader)
    assert r.status_code == 403 and r.json()["code"] == "forbidden_scope"
    # Another key neither sees nor touches it.
    _, other = await make_key(scopes=["webhooks"])
    assert (await api.get(f"/v1/webhooks/{hook['id']}", headers=other)).status_code == 404
    assert (await api.get("/v1/webhooks", headers=other)).json()["data"] == []
    r = await api.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["*"]}, headers=other
    )
    assert r.status_code == 201
    assert len((await api.get("/v1/webhooks", headers=other)).json()["data"]) == 1
    assert len((await api.get("/v1/webhooks", headers=admin_headers)).json()["data"]) == 2
    assert (
        await api.delete(f"/v1/webhooks/{hook['id']}", headers=admin_headers)
    ).status_code == 204
    assert (await api.get(f"/v1/webhooks/{hook['id']}", headers=admin_headers)).status_code == 404
    await _clear(app_state)


async def test_bad_requests(api: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    r = await api.post(
        "/v1/webhooks", json={"url": "http://x/", "events": ["nope"]}, headers=admin_headers
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = await api.post(
        "/v1/webhooks", json={"url": "ftp://example.com/", "events": ["*"]}, headers=admin_headers
    )
    assert r.status_code == 422 and r.json()["code"] == "webhook_url_refused"
    r = await api.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/", "events": ["*"], "routes": ["bogus"]},
        headers=admin_headers,
    )
    assert r.status_code == 422
    assert (await api.get("/v1/webhooks/not-an-id", headers=admin_headers)).status_code == 404
    assert (await api.get("/v1/webhooks")).status_code == 401


async def test_private_urls_refused_unless_allowed(api_settings: Any, amqp: Any) -> None:
    data = api_settings.model_dump()
    data["webhooks"]["allow_private"] = False
    settings = type(api_settings).model_validate(data)
    async with running_app(settings) as (_, client):
        headers = {"Authorization": f"Bearer {settings.bootstrap_api_key}"}
        for url in ("http://127.0.0.1:8080/", "http://169.254.169.254/", "http://10.0.0.1/"):
            r = await client.post(
                "/v1/webhooks", json={"url": url, "events": ["*"]}, headers=headers
            )
            assert r.status_code == 422 and r.json()["code"] == "webhook_url_refused", r.text


async def test_deliveries_and_redelivery(
    api: httpx.AsyncClient, admin_headers: dict[str, str], app_state: AppState
) -> None:
    await _clear(app_state)
    r = await api.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["*"]},
        headers=admin_headers,
    )
    hook = r.json()
    await emit_received(app_state.engine, 3)
    r = await api.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=2", headers=admin_headers)
    page = r.json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    d = page["data"][0]
    assert d["status"] == "pending" and d["payload"]["type"] == "message.received"
    r = await api.get(
        f"/v1/webhooks/{hook['id']}/deliveries?cursor={page['next_cursor']}", headers=admin_headers
    )
    assert len(r.json()["data"]) == 1 and r.json()["next_cursor"] is None
    r = await api.post(
        f"/v1/webhooks/{hook['id']}/deliveries/{d['id']}/redeliver", headers=admin_headers
    )
    assert r.status_code == 202 and r.json()["status"] == "pending"
    r = await api.post(
        f"/v1/webhooks/{hook['id']}/deliveries/00000000-0000-0000-0000-000000000000/redeliver",
        headers=admin_headers,
    )
    assert r.status_code == 404
    await _clear(app_state)
