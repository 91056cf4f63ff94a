"""Every compatible read checks the `read` scope and shows only the caller's own messages
(an admin key sees every one); SMSSender's balance needs the `modems` scope."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
import websockets

from smsgw_api.deps import AppState
from smsgw_shared.store.repos.messages import NewMessages

from .util import fresh_key, set_status


async def _stored(state: AppState, api_key_id) -> str:
    """A sent message stored for `api_key_id` (None: stored without a key)."""
    from smsgw_shared.ids import uuid7_strings

    batch, mid, job = uuid7_strings(3)
    group = NewMessages(
        batch_id=batch,
        api_key_id=api_key_id,
        sender=None,
        text="scoped",
        encoding="gsm7",
        parts_count=1,
        status="queued",
        reference="scoped-ref",
    )
    group.add(mid, "+79160001234", "modem:m1", job)  # no exchange: no outbox job
    await state.ingestor.committer.submit(group)
    await set_status(state, mid, "sent")
    return mid


@pytest.fixture
async def keys(app_state):
    """Secrets of: the owner (send, read), a send-only key, another reader, an admin."""
    owner, owner_secret = await fresh_key(app_state)
    _, send_only = await fresh_key(app_state, scopes=("send",))
    _, other = await fresh_key(app_state, scopes=("send", "read"))
    _, admin = await fresh_key(app_state, scopes=("admin",))
    return owner, {"owner": owner_secret, "send_only": send_only, "other": other, "admin": admin}


async def _keys_by_name(app_state, secrets):
    return {who: await app_state.key_cache.by_secret(s) for who, s in secrets.items()}


async def test_smstools_lookups_need_read_and_ownership(api, app_state, keys):
    owner, secrets = keys
    names = await _keys_by_name(app_state, secrets)
    mid = await _stored(app_state, owner.id)
    orphan = await _stored(app_state, None)

    async def get(who: str, message_id: str, kind: str = "sent") -> httpx.Response:
        auth = httpx.BasicAuth(names[who].name, secrets[who])
        return await api.get(f"/api/v1.0/sms/{kind}/{message_id}", auth=auth)

    assert (await get("owner", mid)).status_code == 200
    assert (await get("admin", mid)).status_code == 200
    r = await get("send_only", mid)
    assert (r.status_code, r.json()) == (403, {"error": "Forbidden"})
    assert (await get("other", mid)).status_code == 404
    assert (await get("other", orphan)).status_code == 404  # no key: not the caller's
    assert (await get("admin", orphan)).status_code == 200
    auth = httpx.BasicAuth(names["send_only"].name, secrets["send_only"])
    assert (await api.get("/api/v1.0/sms/sent/", auth=auth)).status_code == 403
    auth = httpx.BasicAuth(names["other"].name, secrets["other"])
    listed = (await api.get("/api/v1.0/sms/sent/", auth=auth)).json()["message_id"]
    assert mid not in listed and orphan not in listed


async def test_smstele_status_needs_read_and_ownership(api, app_state, keys):
    owner, secrets = keys
    names = await _keys_by_name(app_state, secrets)
    await _stored(app_state, owner.id)

    async def status(who: str) -> dict:
        params = {"login": names[who].name, "psw": secrets[who], "id": "scoped-ref"}
        return (await api.get("/cgi-bin/status", params=params)).json()

    assert (await status("send_only"))["error"] == "-23"
    assert (await status("other"))["results"] == []
    assert len((await status("owner"))["results"]) >= 1


async def test_smsapiserver_query_needs_read_and_ownership(api, app_state, keys):
    owner, secrets = keys
    mid = await _stored(app_state, owner.id)
    orphan = await _stored(app_state, None)

    async def query(who: str, message_id: str) -> int:
        r = await api.get(f"/v1/query?message_id={message_id}", headers={"X-API-Key": secrets[who]})
        return r.status_code

    assert await query("owner", mid) == 200
    assert await query("admin", mid) == 200
    assert await query("send_only", mid) == 403
    assert await query("other", mid) == 404
    assert await query("other", orphan) == 404
    assert await query("owner", orphan) == 404


@pytest.fixture
async def live(api_app) -> AsyncIterator[str]:
    app, _ = api_app
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task


async def test_smsapiserver_websocket_query_needs_read(app_state, keys, live):
    """SM.Query over the JSON-RPC WebSocket is a read: a send-only key may submit, not query;
    a read-only key may query its own messages, not submit."""
    owner, secrets = keys
    mid = await _stored(app_state, owner.id)
    _, read_only = await fresh_key(app_state, scopes=("read",))

    async def call(secret: str, method: str, params: dict) -> dict:
        url = f"ws://{live}/v1/ws/jsonrpc?access_token={secret}"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"method": method, "params": [params], "id": 1}))
            return json.loads(await ws.recv())

    refused = await call(secrets["send_only"], "SM.Query", {"message_id": mid})
    assert refused["error"].startswith("403"), refused
    assert (await call(secrets["owner"], "SM.Query", {"message_id": mid}))["error"] is None
    refused = await call(read_only, "SM.Submit", {"dst": "79160001234", "text": "x"})
    assert refused["error"].startswith("403"), refused


async def test_smssender_balance_needs_the_modems_scope(api, app_state):
    _, secret = await fresh_key(app_state, scopes=("send",))
    r = await api.get(f"/?c=get_balance&access-token={secret}")
    assert (r.status_code, r.json()) == (401, {"error": "Authenticate error"})
