"""Keys reach no further than they should: scopes that match the risk (USSD, webhooks),
route-limited keys (the tenant boundary), rate limits per recipient on every send path,
stream limits, and revoked keys ending their streams."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import insert

from smsgw_api.deps import AppState
from smsgw_api.problems import Problem
from smsgw_api.services.ingest import SendSpec
from smsgw_inbound.events import LogEvent, deliveries_for, record_events, stable_id
from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings
from smsgw_shared.messages import utcnow
from smsgw_shared.store.db import make_engine
from smsgw_shared.store.repos.webhooks import WebhookRepository
from smsgw_shared.store.schema import inbound_messages


async def test_route_limited_keys_are_checked_when_made(
    api: httpx.AsyncClient, admin_headers: dict[str, str], make_key: Any
) -> None:
    data, _ = await make_key(routes=["modem:m2", "pool:p", "smpp:*"])
    assert data["routes"] == ["modem:m2", "pool:p", "smpp:*"]
    listed = (await api.get(f"/v1/keys/{data['id']}", headers=admin_headers)).json()
    assert listed["routes"] == data["routes"]
    for bad in (
        {"routes": ["modem"]},
        {"routes": ["http://x"]},
        {"routes": ["modem:m1"], "scopes": ["admin"]},
        {"routes": "modem:m1"},
    ):
        r = await api.post(
            "/v1/keys", json={"name": "bad" + uuid.uuid4().hex[:6], **bad}, headers=admin_headers
        )
        assert r.status_code == 422, (bad, r.text)


async def test_new_keys_get_a_rate_limit_by_default(
    api: httpx.AsyncClient, make_key: Any, api_settings: Settings
) -> None:
    data, _ = await make_key()
    assert data["rate_limit"] == api_settings.api.new_key_rate_limit == 100
    data, _ = await make_key(rate_limit=0)
    assert data["rate_limit"] == 0  # unlimited, when asked for


async def test_a_route_limited_key_sends_only_through_its_routes(
    api: httpx.AsyncClient, make_key: Any
) -> None:
    _, m2 = await make_key(routes=["modem:m2"])
    # Another route, named: refused.
    for route in ("modem:m1", "modem:*", "smpp:b1"):
        r = await api.post(
            "/v1/messages", json={"to": "+79160001234", "text": "x", "route": route}, headers=m2
        )
        assert r.status_code == 403 and r.json()["code"] == "route_not_allowed", r.text
    # The rule (+7916 → smpp:b1) and the default (modem:*) point elsewhere: its own route.
    r = await api.post(
        "/v1/messages", json={"to": ["+79160001234", "+79210001234"], "text": "x"}, headers=m2
    )
    assert r.status_code == 202, r.text
    assert {m["route"] for m in r.json()["messages"]} == {"modem:m2"}
    # Its own route, named, is fine.
    r = await api.post(
        "/v1/messages", json={"to": "+79210001234", "text": "x", "route": "modem:m2"}, headers=m2
    )
    assert r.status_code == 202
    # A key limited to the bind still follows the rule that points at it.
    _, b1 = await make_key(routes=["smpp:b1"])
    r = await api.post(
        "/v1/messages", json={"to": ["+79160001234", "+79210001234"], "text": "x"}, headers=b1
    )
    assert {m["route"] for m in r.json()["messages"]} == {"smpp:b1"}
    # modem:* covers every modem; a pool itself only when listed.
    _, modems = await make_key(routes=["modem:*"])
    r = await api.post(
        "/v1/messages",
        json={"to": "+79160001234", "text": "x", "route": "modem:m1"},
        headers=modems,
    )
    assert r.status_code == 202 and r.json()["messages"][0]["route"] == "modem:m1"
    r = await api.post("/v1/messages", json={"to": "+79160001234", "text": "x"}, headers=modems)
    assert r.json()["messages"][0]["route"] == "modem:*"


async def test_ussd_and_balance_need_the_modems_scope_and_the_keys_modem(
    api: httpx.AsyncClient, make_key: Any
) -> None:
    _, sender = await make_key(scopes=["send", "read"])
    r = await api.post("/v1/modems/m1/ussd", json={"code": "*100#", "timeout": 0.2}, headers=sender)
    assert r.status_code == 403 and r.json()["code"] == "forbidden_scope"
    r = await api.get("/v1/modems/m1/balance", headers=sender)
    assert r.status_code == 403
    _, m2 = await make_key(scopes=["modems"], routes=["modem:m2"])
    r = await api.post("/v1/modems/m1/ussd", json={"code": "*100#", "timeout": 0.2}, headers=m2)
    assert r.status_code == 404 and r.json()["code"] == "unknown_modem"
    assert (await api.get("/v1/modems/m1/balance", headers=m2)).status_code == 404
    # Its own modem: asked (no worker runs in this test: nobody answers).
    r = await api.post("/v1/modems/m2/ussd", json={"code": "*100#", "timeout": 0.2}, headers=m2)
    assert r.status_code in (503, 504), r.text


async def test_routes_shows_a_limited_key_its_own(api: httpx.AsyncClient, make_key: Any) -> None:
    _, m2 = await make_key(routes=["modem:m2"])
    body = (await api.get("/v1/routes", headers=m2)).json()
    assert [m["id"] for m in body["modems"]] == ["m2"] and body["binds"] == []


async def test_inbound_of_other_routes_is_invisible(
    api: httpx.AsyncClient, make_key: Any, app_state: AppState, admin_headers: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = {r: uuid.uuid4() for r in ("modem:m1", "modem:m2", "smpp:b1")}
    async with app_state.engine.begin() as conn:
        await conn.execute(
            insert(inbound_messages),
            [
                {
                    "id": i,
                    "route": r,
                    "sender": f"+7900{tag[:4]}",
                    "recipient": None,
                    "text": f"otp {tag}",
                    "encoding": "gsm7",
                }
                for r, i in ids.items()
            ],
        )
    sender = f"+7900{tag[:4]}"
    _, m2 = await make_key(routes=["modem:m2"])
    data = (await api.get("/v1/inbound", params={"sender": sender}, headers=m2)).json()["data"]
    assert [d["route"] for d in data] == ["modem:m2"]
    assert (await api.get(f"/v1/inbound/{ids['modem:m1']}", headers=m2)).status_code == 404
    assert (await api.get(f"/v1/inbound/{ids['modem:m2']}", headers=m2)).status_code == 200
    _, modems = await make_key(routes=["modem:*"])
    data = (await api.get("/v1/inbound", params={"sender": sender}, headers=modems)).json()["data"]
    assert sorted(d["route"] for d in data) == ["modem:m1", "modem:m2"]
    # Keys without routes see everything, as before.
    data = (await api.get("/v1/inbound", params={"sender": sender}, headers=admin_headers)).json()
    assert len(data["data"]) == 3


async def test_a_limited_keys_webhooks_see_only_its_routes(
    api: httpx.AsyncClient, make_key: Any, app_state: AppState
) -> None:
    _, m2 = await make_key(scopes=["webhooks"], routes=["modem:m2"])
    body = {"url": "http://127.0.0.1:9/hook", "events": ["message.received"]}
    r = await api.post("/v1/webhooks", json=body | {"routes": ["modem:m1"]}, headers=m2)
    assert r.status_code == 403 and r.json()["code"] == "route_not_allowed"
    r = await api.post("/v1/webhooks", json=body, headers=m2)
    assert r.status_code == 201 and r.json()["routes"] == ["modem:m2"]
    hook = uuid.UUID(r.json()["id"])
    async with app_state.engine.connect() as conn:
        subs = [s for s in await WebhookRepository.active_subscriptions(conn) if s.id == hook]
    events = [received("otp 1", "modem:m1"), received("otp 2", "modem:m2")]
    got = deliveries_for(events, subs)
    assert [json.loads(d.payload)["data"]["text"] for d in got] == ["otp 2"]
    await api.delete(f"/v1/webhooks/{hook}", headers=m2)


async def test_rate_limits_count_recipients_on_every_send_path(
    api: httpx.AsyncClient, make_key: Any, app_state: AppState
) -> None:
    data, headers = await make_key(rate_limit=3)
    to = ["+79210001201", "+79210001202", "+79210001203", "+79210001204"]
    r = await api.post("/v1/messages", json={"to": to, "text": "x"}, headers=headers)
    assert r.status_code == 202  # let through once: the key is now 3 recipients in debt
    r = await api.post("/v1/messages", json={"to": to[0], "text": "x"}, headers=headers)
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    # Compat APIs (and WebSocket sends) accept through the same ingestor: also refused.
    key = await app_state.key_cache.by_secret(headers["Authorization"].split()[1])
    assert key is not None
    with pytest.raises(Problem) as exc:
        await app_state.ingestor.accept(key, SendSpec([to[0]], "x"))
    assert exc.value.status == 429
    auth = httpx.BasicAuth(data["name"], headers["Authorization"].split()[1])
    r = await api.post(
        "/api/v1.0/sms/outgoing", json={"mobiles": ["79210001201"], "text": "x"}, auth=auth
    )
    assert r.status_code == 429, r.text


def received(text: str, route: str) -> LogEvent:
    return LogEvent(
        stable_id("t", uuid.uuid4()),
        "message.received",
        {"text": text, "from": "+79000000000"},
        utcnow(),
        route=route,
    )


async def emit(settings: Settings, *events: LogEvent) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await record_events(conn, list(events))
    finally:
        await engine.dispose()


@pytest.fixture
def stream_settings(api_settings: Settings) -> Settings:
    data = api_settings.model_dump()
    data["api"] = data["api"] | {"max_streams_per_key": 2, "key_cache_ttl": 0.2}
    return Settings.model_validate(data)


async def test_streams_limited_by_route_count_and_revocation(
    stream_settings: Settings, amqp: AmqpConnection, serve: Any
) -> None:
    admin = {"Authorization": f"Bearer {stream_settings.bootstrap_api_key}"}
    async with serve(stream_settings) as base, httpx.AsyncClient(base_url=f"http://{base}") as c:
        r = await c.post(
            "/v1/keys",
            json={"name": "t" + uuid.uuid4().hex[:8], "routes": ["modem:m2"]},
            headers=admin,
        )
        key = r.json()
        url = f"ws://{base}/v1/ws?api_key={key['secret']}"
        async with websockets.connect(url) as ws1, websockets.connect(url) as ws2:
            # A third stream of the same key: refused (429), the others go on.
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            assert refused.value.response.status_code == 429
            r = await c.get("/v1/events", headers={"Authorization": f"Bearer {key['secret']}"})
            assert r.status_code == 429 and r.json()["code"] == "too_many_streams"
            await emit(
                stream_settings, received("m1's otp", "modem:m1"), received("m2's otp", "modem:m2")
            )
            got = json.loads(await asyncio.wait_for(ws1.recv(), 10))
            assert got["data"]["text"] == "m2's otp"
            assert json.loads(await asyncio.wait_for(ws2.recv(), 10))["data"]["text"] == "m2's otp"
            # Revoked: both streams end within the key cache's TTL.
            r = await c.delete(f"/v1/keys/{key['id']}", headers=admin)
            assert r.status_code == 200
            for ws in (ws1, ws2):
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 15)


async def test_a_huge_last_event_id_is_a_422(
    stream_settings: Settings, amqp: AmqpConnection, serve: Any
) -> None:
    admin = {"Authorization": f"Bearer {stream_settings.bootstrap_api_key}"}
    async with serve(stream_settings) as base, httpx.AsyncClient(base_url=f"http://{base}") as c:
        for value in ("9" * 5000, str(2**63), "x" * 5000):
            r = await c.get("/v1/events", headers=admin | {"Last-Event-ID": value})
            assert r.status_code == 422 and r.json()["code"] == "invalid_since", value
