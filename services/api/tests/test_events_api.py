"""Live streams over real HTTP (uvicorn): SSE resume with Last-Event-ID, WebSocket filters
and per-key visibility."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from smsgw_api.app import create_app
from smsgw_inbound.events import LogEvent, record_events, stable_id
from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings
from smsgw_shared.messages import utcnow
from smsgw_shared.store.db import make_engine
from smsgw_shared.testing import free_port


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[str]:
    """The real app behind uvicorn on a free port (streaming needs a real server)."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def emit(settings: Settings, *events: LogEvent) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await record_events(conn, list(events))
    finally:
        await engine.dispose()


def status(to: str, st: str, route: str = "smpp:b1", key: uuid.UUID | None = None) -> LogEvent:
    mid = uuid.uuid4()
    return LogEvent(
        stable_id("t", mid, st),
        "message.status",
        {"message_id": str(mid), "status": st, "to": to, "route": route},
        utcnow(),
        route=route,
        message_id=mid,
        api_key_id=key,
    )


def received(text: str, route: str = "modem:m1") -> LogEvent:
    return LogEvent(
        stable_id("t", uuid.uuid4()), "message.received", {"text": text}, utcnow(), route=route
    )


async def read_sse(
    base: str,
    headers: dict[str, str],
    n: int,
    query: str = "",
    live: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """The first `n` events of an SSE stream; `live` is set on its `retry:` preamble, which
    the server sends once the stream has its place (nothing visible after it is missed)."""
    out: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=f"http://{base}", timeout=10) as client,
        client.stream("GET", f"/v1/events{query}", headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, Any] = {}
        async for line in resp.aiter_lines():
            if line.startswith("retry: ") and live is not None:
                live.set()
            elif line.startswith("id: "):
                frame["id"] = line[4:]
            elif line.startswith("event: "):
                frame["event"] = line[7:]
            elif line.startswith("data: "):
                frame["data"] = json.loads(line[6:])
            elif line == "" and "data" in frame:
                out.append(frame)
                frame = {}
                if len(out) == n:
                    return out
    return out


@pytest.fixture
async def base(api_settings: Settings, amqp: AmqpConnection) -> AsyncIterator[str]:
    async with served(api_settings) as b:
        yield b


async def test_sse_live_and_resume(base: str, api_settings: Settings) -> None:
    headers = {"Authorization": f"Bearer {api_settings.bootstrap_api_key}"}
    tag = uuid.uuid4().hex
    live = asyncio.Event()
    reader = asyncio.create_task(read_sse(base, headers, 3, "?types=message.status", live))
    await asyncio.wait_for(live.wait(), 10)  # from now on, every event reaches the reader
    await emit(
        api_settings,
        status(tag, "sent"),
        received("not a status"),
        status(tag, "delivered"),
        status(tag, "undelivered"),
    )
    got = await asyncio.wait_for(reader, 10)
    assert [g["data"]["data"]["status"] for g in got] == ["sent", "delivered", "undelivered"]
    assert all(g["event"] == "message.status" for g in got)
    assert got[0]["data"]["id"].startswith("evt_")
    # Reconnect after the first event: the rest is replayed from the store.
    again = await read_sse(
        base, headers | {"Last-Event-ID": got[0]["id"]}, 2, "?types=message.status"
    )
    assert [g["id"] for g in again] == [got[1]["id"], got[2]["id"]]
    # A status subtype filter.
    only = await read_sse(base, headers, 1, f"?types=message.status.delivered&since={got[0]['id']}")
    assert only[0]["id"] == got[1]["id"]


async def test_sse_bad_filter_and_auth(base: str, api_settings: Settings) -> None:
    headers = {"Authorization": f"Bearer {api_settings.bootstrap_api_key}"}
    async with httpx.AsyncClient(base_url=f"http://{base}") as client:
        r = await client.get("/v1/events?types=bogus", headers=headers)
        assert r.status_code == 422
        assert (await client.get("/v1/events")).status_code == 401


async def test_websocket_filters_and_visibility(base: str, api_settings: Settings) -> None:
    admin = {"Authorization": f"Bearer {api_settings.bootstrap_api_key}"}
    async with httpx.AsyncClient(base_url=f"http://{base}") as client:
        r = await client.post("/v1/keys", json={"name": "ws" + uuid.uuid4().hex[:6]}, headers=admin)
        key = r.json()
    own_key = uuid.UUID(key["id"])
    async with (
        websockets.connect(
            f"ws://{base}/v1/ws?types=message.status,message.received&route=modem:*",
            additional_headers=admin,
        ) as admin_ws,
        websockets.connect(f"ws://{base}/v1/ws?api_key={key['secret']}") as user_ws,
    ):
        # Connected means live: the server takes the stream's place before it accepts.
        await emit(
            api_settings,
            status("+1", "sent", route="smpp:b1"),  # route filtered out for admin_ws
            status("+2", "sent", route="modem:m1"),  # someone else's: not for user_ws
            status("+3", "delivered", route="modem:m2", key=own_key),
            received("hello", route="modem:m1"),
        )
        a = [json.loads(await asyncio.wait_for(admin_ws.recv(), 5)) for _ in range(3)]
        u = [json.loads(await asyncio.wait_for(user_ws.recv(), 5)) for _ in range(2)]
    assert [x["data"].get("to") for x in a] == ["+2", "+3", None]
    assert [x["type"] for x in u] == ["message.status", "message.received"]
    assert u[0]["data"]["to"] == "+3" and isinstance(u[0]["seq"], int)


async def test_websocket_refuses_without_key(base: str) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(f"ws://{base}/v1/ws") as ws:
            await ws.recv()
