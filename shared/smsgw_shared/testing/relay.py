"""A TCP relay for fault tests: a service talks to a real server (RabbitMQ, an SMSC)
through it, and `kill()` is that server's machine going away (every connection dropped,
new ones refused) until `start()` again, on the same port."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlparse


class TcpRelay:
    """Forwards 127.0.0.1:`port` to `target`; counts the connections it relayed."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen (on the same port as before, after a `kill`); returns the port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def kill(self) -> None:
        """Drop every relayed connection and refuse new ones."""
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        self._writers.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None


def url_through(url: str, port: int) -> str:
    """A broker URL pointed at 127.0.0.1:`port` (a relay), its credentials kept."""
    u = urlparse(url)
    return u._replace(netloc=f"{u.username}:{u.password}@127.0.0.1:{port}").geturl()
