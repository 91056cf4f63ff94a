"""`JoinedWrites`: what one step of the event loop writes to a connection goes out in one
`send()` (uvicorn writes a response's head and body separately), in order, and nothing held
is lost when the connection closes."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from smsgw_api.server import CappedHttpToolsProtocol, JoinedWrites


class FakeTransport(asyncio.Transport):
    """Records each write (one write = one send() on a socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = f"hello {scope['path']}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _protocol(transport: FakeTransport) -> CappedHttpToolsProtocol:
    config = uvicorn.Config(_app, lifespan="off", log_level="warning", access_log=False)
    config.load()
    protocol = CappedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_response_is_one_write():
    t = FakeTransport()
    p = _protocol(t)
    p.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    await _settle()
    assert len(t.writes) == 1, t.writes
    head, _, body = t.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b"hello /a"
    p.connection_lost(None)


async def test_pipelined_requests_are_answered_in_order():
    t = FakeTransport()
    p = _protocol(t)
    p.data_received(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    await _settle()
    out = b"".join(t.writes)
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert out.index(b"hello /1") < out.index(b"hello /2")
    p.connection_lost(None)


async def test_an_answer_held_when_the_connection_closes_is_sent_first():
    """A malformed request after a good one in the same read: the good one's response,
    still held, goes out before the 400 and the close."""
    t = FakeTransport()
    p = _protocol(t)
    joined = p.transport
    assert isinstance(joined, JoinedWrites)
    joined.write(b"first")
    p.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Header: y\r\n\r\n")
    assert t.closed
    assert t.writes[0].startswith(b"firstHTTP/1.1 400 "), t.writes
    await _settle()  # the scheduled send finds nothing left: no write after the close
    assert len(t.writes) == 1


async def test_writes_are_joined_until_the_limit_and_an_abort_drops_them():
    t = FakeTransport()
    j = JoinedWrites(t)
    j.write(b"a")
    j.write(bytearray(b"b"))
    assert t.writes == [] and j.get_write_buffer_size() == 2
    await _settle()
    assert t.writes == [b"ab"]
    j.write(b"x" * (JoinedWrites.LIMIT + 1))  # over the limit: sent at once
    assert len(t.writes) == 2
    j.write(b"dropped")
    j.abort()
    await _settle()
    assert len(t.writes) == 2 and t.aborted
    # Everything else is the transport's own.
    assert j.get_extra_info("peername") == ("127.0.0.1", 40000)
