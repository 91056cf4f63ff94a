"""The caps uvicorn enforces as `smsgw api` starts it: request line + headers
(`api.max_header_bytes`, 431) and one WebSocket message (`api.max_ws_message_bytes`)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets

from smsgw_api.server import uvicorn_options
from smsgw_shared.config import Settings


@pytest.fixture
async def served(api_app: Any, api_settings: Settings) -> AsyncIterator[tuple[str, int]]:
    """The running app behind a real socket, with the options `smsgw api` gives uvicorn."""
    app, _ = api_app
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    options = uvicorn_options(api_settings)
    config = uvicorn.Config(app, lifespan="off", log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield "127.0.0.1", sock.getsockname()[1]
    server.should_exit = True
    await task


async def _exchange(addr: tuple[str, int], raw: bytes) -> bytes:
    """Send raw bytes, read the answer until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(raw)
        await writer.drain()
        out = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 5)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        return out
    except ConnectionResetError:
        return out
    finally:
        writer.close()


async def test_oversized_headers_are_431(served, api_settings):
    limit = api_settings.api.max_header_bytes
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (limit * 8) + b"\r\n\r\n"
    answer = await _exchange(served, big)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head
    assert json.loads(body)["code"] == "headers_too_large"
    # A long URL is part of the same cap.
    answer = await _exchange(served, b"GET /healthz?" + b"a" * (limit * 2) + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


async def test_headers_under_the_cap_and_large_bodies_pass(served, api_settings, admin_key):
    """Only the headers count: a body far over the header cap, arriving with the headers in
    one read, and pipelined requests are answered as usual."""
    limit = api_settings.api.max_header_bytes
    near = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (limit - 200) + b"\r\n\r\n"
    assert (await _exchange(served, near + near)).count(b"HTTP/1.1 200 ") == 2
    body = json.dumps({"text": "x" * (limit * 4)}).encode()
    post = (
        b"POST /v1/messages/preview HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {admin_key}\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )
    answer = await _exchange(served, post)
    assert answer.startswith(b"HTTP/1.1 422 "), answer[:300]  # text over 10,000 characters


async def test_oversized_websocket_message_closes_the_socket(served, api_settings, admin_key):
    host, port = served
    url = f"ws://{host}:{port}/v1/ws/jsonrpc?access_token={admin_key}"
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send("x" * (api_settings.api.max_ws_message_bytes + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_deeply_nested_websocket_message_is_refused_not_a_server_error(served, admin_key):
    """JSON nested 50,000 deep on the JSON-RPC socket: closed as unreadable (1003), as any
    malformed message; never a server error (1011)."""
    host, port = served
    url = f"ws://{host}:{port}/v1/ws/jsonrpc?access_token={admin_key}"
    async with websockets.connect(url) as ws:
        await ws.send("[" * 50_000)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
