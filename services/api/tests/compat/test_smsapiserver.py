"""sms-api-server (seed 003): send/query over HTTP, SSE, the JSON-RPC WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import uvicorn
import websockets

from .util import fresh_key, log_event, set_status


@pytest.fixture
async def key(app_state):
    """(key, Bearer headers) of a key of this test's own."""
    k, secret = await fresh_key(app_state)
    return k, {"Authorization": f"Bearer {secret}"}


@pytest.fixture
async def live(api_app) -> AsyncIterator[str]:
    """The same running app behind a real socket (streams and WebSockets need one)."""
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


def multipart(**fields: str) -> dict:
    """`curl -F name=value …` (multipart/form-data)."""
    return {"files": {k: (None, v) for k, v in fields.items()}}


async def test_send_multipart_then_query(api, app_state, key, admin_headers):
    _, headers = key
    r = await api.post(
        "/v1/send", headers=headers, **multipart(src="bart", dst="79160001234", text="hi")
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    mid = r.json()["message_id"]
    assert list(r.json()) == ["message_id"]

    r = await api.get(f"/v1/query?src=bart&message_id={mid}", headers=headers)
    assert r.status_code == 200
    assert r.json() == {"message_state": "ENROUTE", "final_date": "", "error_code": 0}
    await set_status(app_state, mid, "delivered")
    r = await api.get(f"/v1/query?src=bart&message_id={mid}", headers=headers)
    body = r.json()
    assert body["message_state"] == "DELIVERED" and len(body["final_date"]) == 16
    head = await api.head(f"/v1/query?message_id={mid}", headers=headers)
    assert head.status_code == 200 and head.content == b""

    native = (await api.get(f"/v1/messages/{mid}", headers=admin_headers)).json()
    assert native["status"] == "delivered" and native["from"] == "bart"


async def test_readme_special_characters_example(api, key, admin_headers):
    _, headers = key
    r = await api.post(
        "/v1/send", headers=headers, **multipart(dst="79160001234", enc="ucs2", text="é nóis")
    )
    assert r.status_code == 200
    native = await api.get(f"/v1/messages/{r.json()['message_id']}", headers=admin_headers)
    assert native.json()["encoding"] == "ucs2" and native.json()["text"] == "é nóis"


async def test_readme_examples_with_names_for_numbers(api, key):
    # The README sends to "lisa" and "foobar": its SMSC took any address; smsgw routes
    # by number, so those are refused with a plain-text 400.
    _, headers = key
    r = await api.post("/v1/send", headers=headers, **multipart(src="bart", dst="lisa", text="hi"))
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
    r = await api.get("/v1/query?src=bart&message_id=1234", headers=headers)
    assert r.status_code == 404 and r.text.endswith("\n")  # the original: 502


async def test_urlencoded_put_and_form_errors(api, key):
    _, headers = key
    r = await api.put("/v1/send", headers=headers, data={"dst": "79160001234", "text": "x"})
    assert r.status_code == 200 and r.json()["message_id"]
    cases = [
        ({"text": "x"}, 'missing parameter "dst": number of recipient\n'),
        ({"dst": "79160001234"}, 'missing parameter "text": text message\n'),
        (
            {"dst": "79160001234", "text": "x", "enc": "utf8"},
            'invalid parameter "enc"="utf8"; supported: latin1, ucs2\n',
        ),
        (
            {"dst": "79160001234", "text": "x", "register": "always"},
            'invalid parameter "register"="always"; supported: final, failure\n',
        ),
    ]
    for data, text in cases:
        r = await api.post("/v1/send", headers=headers, data=data)
        assert (r.status_code, r.text) == (400, text)
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
    r = await api.get("/v1/query", headers=headers)
    assert (r.status_code, r.text) == (
        400,
        'missing parameter "message_id": message id from send\n',
    )


async def test_auth_presentations_and_open_networks(api, app_state, key):
    k, headers = key
    data = {"dst": "79160001234", "text": "x"}
    r = await api.post("/v1/send", data=data)
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/plain")
    assert (await api.post("/v1/send", data=data, headers={"X-API-Key": "nope"})).status_code == 401
    secret = headers["Authorization"].split()[1]
    assert (await api.post("/v1/send", data=data, headers={"X-API-Key": secret})).status_code == 200
    assert (await api.post("/v1/send", data=data, auth=(k.name, secret))).status_code == 200
    assert (await api.post(f"/v1/send?access_token={secret}", data=data)).status_code == 200
    _, rsecret = await fresh_key(app_state, scopes=("read",))
    r = await api.post("/v1/send", data=data, headers={"X-API-Key": rsecret})
    assert r.status_code == 403

    app_state.settings.compat.smsapiserver_open_networks = ["127.0.0.0/8"]
    app_state.settings.compat.smsapiserver_open_key = k.name
    r = await api.post("/v1/send", data=data)  # the test client calls from 127.0.0.1
    assert r.status_code == 200
    r = await api.get(f"/v1/query?message_id={r.json()['message_id']}")
    assert r.json()["message_state"] == "ENROUTE"
    app_state.settings.compat.smsapiserver_open_networks = ["10.0.0.0/8"]
    assert (await api.post("/v1/send", data=data)).status_code == 401


async def test_query_other_keys_message_is_404(api, app_state, key):
    _, headers = key
    mid = (
        await api.post("/v1/send", headers=headers, data={"dst": "79160001234", "text": "x"})
    ).json()["message_id"]
    _, other = await fresh_key(app_state)
    r = await api.get(f"/v1/query?message_id={mid}", headers={"X-API-Key": other})
    assert r.status_code == 404
    r = await api.get(f"/v1/query?src=someoneelse&message_id={mid}", headers=headers)
    assert r.status_code == 200  # no sender on the message: nothing to compare


CANARY = "canary "


async def _data_lines(resp: httpx.Response, n: int, live: asyncio.Queue[str]) -> list[dict]:
    """The first `n` `Data:` events that are not canaries (those go to `live`)."""
    got: list[dict] = []
    async for line in resp.aiter_lines():
        if line.startswith("Data: "):
            data = json.loads(line[len("Data: ") :])
            if data.get("text", "").startswith(CANARY):
                live.put_nowait(data["text"])
                continue
            got.append(data)
            if len(got) == n:
                break
    return got


async def until_live(app_state, seen: Callable[[], Awaitable[str]]) -> None:
    """Wait until a stream delivers: log incoming-SMS canaries until one comes through.

    The seed's streams subscribe once the response (or the WebSocket) has started and send
    nothing before their first event, so no server signal says they are live. `seen()`
    returns the text of the next canary the stream delivered."""
    for _ in range(20):
        tag = CANARY + uuid.uuid4().hex
        await log_event(app_state, "message.received", {"from": "+7", "to": "+7", "text": tag})
        with contextlib.suppress(TimeoutError):
            while await asyncio.wait_for(seen(), 2) != tag:
                pass  # an earlier canary, delivered late
            return
    raise AssertionError("the stream never delivered a canary")


async def test_sse_incoming_and_receipts(api, app_state, key, live):
    k, headers = key
    r = await api.post(
        "/v1/send",
        headers=headers,
        data={"src": "bart", "dst": "79160001234", "text": "hi", "register": "final"},
    )
    mid = r.json()["message_id"]
    client = httpx.AsyncClient(base_url=f"http://{live}", timeout=10)
    async with client, client.stream("GET", "/v1/sse", headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        canaries: asyncio.Queue[str] = asyncio.Queue()
        reader = asyncio.create_task(_data_lines(resp, 2, canaries))
        await until_live(app_state, canaries.get)
        await log_event(
            app_state,
            "message.received",
            {"from": "+79160001234", "to": "+79990001122", "text": "hello"},
        )
        await set_status(app_state, mid, "delivered")
        await log_event(app_state, "message.status", {"status": "delivered"}, mid, k.id)
        incoming, receipt = await asyncio.wait_for(reader, 10)
    assert incoming == {
        "src": "+79160001234",
        "dst": "+79990001122",
        "text": "hello",
        "emsclass": 0,
    }
    assert receipt["src"] == "+79160001234" and receipt["dst"] == "bart"
    assert receipt["emsclass"] == 4
    assert f"id:{mid} " in receipt["text"] and "stat:DELIVRD" in receipt["text"]


async def test_sse_needs_a_key(api):
    r = await api.get("/v1/sse")
    assert r.status_code == 401


async def test_websocket_jsonrpc_submit_and_query(app_state, key, live):
    _, headers = key
    async with websockets.connect(f"ws://{live}/v1/ws/jsonrpc", additional_headers=headers) as ws:
        await ws.send(
            json.dumps(
                {"method": "SM.Submit", "params": [{"dst": "79160001234", "text": "hi"}], "id": 1}
            )
        )
        reply = json.loads(await ws.recv())
        assert reply["id"] == 1 and reply["error"] is None
        mid = reply["result"]["message_id"]
        await ws.send(json.dumps({"method": "SM.Query", "params": [{"message_id": mid}], "id": 2}))
        reply = json.loads(await ws.recv())
        assert reply == {
            "id": 2,
            "result": {"message_state": "ENROUTE", "final_date": "", "error_code": 0},
            "error": None,
        }
        await ws.send(json.dumps({"method": "SM.Submit", "params": [{"text": "hi"}], "id": 3}))
        reply = json.loads(await ws.recv())
        assert reply["result"] is None
        assert reply["error"] == '400 Bad Request: missing parameter "dst": number of recipient'
        await ws.send(json.dumps({"method": "SM.Nope", "params": [{}], "id": 4}))
        assert json.loads(await ws.recv())["error"] == "rpc: can't find method SM.Nope"


async def test_websocket_refuses_without_a_key(live):
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(f"ws://{live}/v1/ws/jsonrpc"):
            pass
    assert info.value.response.status_code == 403


async def test_websocket_events_call_sm_deliver(app_state, key, live):
    _, headers = key
    url = f"ws://{live}/v1/ws/jsonrpc/events"
    async with websockets.connect(url, additional_headers=headers) as ws:

        async def next_call() -> dict:
            call = json.loads(await ws.recv())
            assert call["method"] == "SM.Deliver"
            await ws.send(json.dumps({"id": call["id"], "result": None, "error": None}))
            return call

        async def canary() -> str:
            return str((await next_call())["params"][0]["text"])

        await until_live(app_state, canary)
        await log_event(
            app_state, "message.received", {"from": "+79160001234", "to": "+7999", "text": "yo"}
        )
        call = await asyncio.wait_for(next_call(), 10)
        while call["params"][0]["text"].startswith(CANARY):  # one delivered late
            call = await asyncio.wait_for(next_call(), 10)
        assert call["params"] == [
            {"src": "+79160001234", "dst": "+7999", "text": "yo", "emsclass": 0}
        ]
