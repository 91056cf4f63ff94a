"""How uvicorn serves the API: the request header and WebSocket message size caps, and
problem details for the requests its parser refuses.

uvicorn's `h11_max_incomplete_event_size` caps the request line and headers only with the
h11 parser; with httptools (installed, and uvicorn's choice when it is) nothing caps them:
httptools keeps a header value however long it grows. `CappedHttpToolsProtocol` counts the
bytes fed to the parser until the headers are complete and answers `431` beyond the cap.

It also joins what one step of the event loop writes to a connection (`JoinedWrites`):
uvicorn writes a response's status line and headers, then its body, each with its own
`send()`; joined, a response is one system call and one TCP segment.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from smsgw_api.problems import PROBLEM_JSON, Problem
from smsgw_shared.config import Settings

DEFAULT_MAX_HEADER_BYTES = 16 * 1024  # h11's own default


def _problem_answer(problem: Problem, reason: str) -> bytes:
    """A whole HTTP/1.1 answer carrying problem details, closing the connection."""
    body = json.dumps(problem.body()).encode()
    head = (
        f"HTTP/1.1 {problem.status} {reason}\r\n"
        f"content-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _too_large(limit: int) -> bytes:
    problem = Problem(
        431,
        "headers_too_large",
        "Request header fields too large",
        f"the request line and headers are limited to {limit} bytes",
    )
    return _problem_answer(problem, "Request Header Fields Too Large")


class JoinedWrites:
    """A connection's transport whose writes within one step of the event loop go out as
    one: the first write schedules the send for the end of the step (`call_soon`), later
    ones are appended. Closing, or 64 KiB held, sends at once; an abort drops what is held.
    Everything else is the transport's own."""

    LIMIT = 64 * 1024

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            asyncio.get_running_loop().call_soon(self.flush)
        chunk = bytes(data)
        self._held.append(chunk)
        self._size += len(chunk)
        if self._size >= self.LIMIT:
            self.flush()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Send what is held (nothing once the connection is closing)."""
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._size = 0
        if not self.transport.is_closing():
            self.transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._size + self.transport.get_write_buffer_size()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        self._held.clear()
        self._size = 0
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CappedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request whose line and headers exceed
    `h11_max_incomplete_event_size` bytes (431, then the connection is closed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_limit = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
        self._header_bytes = 0
        self._in_headers = True
        self._completed = 0  # messages completed on this connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWrites(transport))  # type: ignore[arg-type]

    def handle_websocket_upgrade(self) -> None:
        """The WebSocket protocol gets the transport itself (after what is held is sent)."""
        joined = self.transport
        if isinstance(joined, JoinedWrites):
            joined.flush()
            self.transport = joined.transport
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (a header with a control character, a broken request
        line…): problem details like every other refusal, not uvicorn's plain text."""
        problem = Problem(400, "bad_request", "Malformed HTTP request", msg)
        self.transport.write(_problem_answer(problem, "Bad Request"))
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers = True
        self._header_bytes = 0
        self._completed += 1

    def data_received(self, data: bytes) -> None:
        if not self._in_headers:
            super().data_received(data)
            return
        room = self._header_limit - self._header_bytes
        if len(data) <= room:
            self._header_bytes += len(data)
            super().data_received(data)
            return
        # The part that may still be headers, then the rest if the headers ended in it.
        self._header_bytes = self._header_limit
        completed = self._completed
        super().data_received(data[:room])
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # refused, or upgraded to a WebSocket
        if self._in_headers and self._completed == completed:
            self.transport.write(_too_large(self._header_limit))
            self.transport.close()
            return
        self.data_received(data[room:])


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments `uvicorn.run` gets for these settings (beyond host and port)."""
    api = settings.api
    return {
        "http": CappedHttpToolsProtocol,
        "h11_max_incomplete_event_size": api.max_header_bytes,
        "ws_max_size": api.max_ws_message_bytes,
        "log_config": None,
        "access_log": False,
        # Requests in hand at SIGTERM get this long; then the lifespan publishes their jobs.
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_timeout)),
    }
