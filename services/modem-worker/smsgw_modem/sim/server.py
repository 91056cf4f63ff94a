"""Transports of a simulated modem: a TCP port and a pty (with a stable symlink)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tty
from pathlib import Path

from smsgw_modem.sim.device import SimDevice
from smsgw_modem.sim.session import LoginSpec, Session

log = logging.getLogger(__name__)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, device: SimDevice, login: LoginSpec | None) -> None:
        self.device = device
        self.login = login
        self.session: Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.device.gone:
            transport.close()
            return
        self.session = Session(
            self.device, transport.write, transport.close, kind="tcp", login=self.login
        )
        self.device.attach(self.session)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.close()


class DeviceServer:
    """Serves one simulated modem on `host:port` and on a pty linked at `pty_link`."""

    def __init__(
        self,
        device: SimDevice,
        host: str,
        port: int,
        *,
        pty_link: Path | None = None,
        login: LoginSpec | None = None,
    ) -> None:
        self.device = device
        self.host = host
        self.port = port
        self.pty_link = pty_link
        self.login = login
        self.pty_path: str | None = None
        self._server: asyncio.Server | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._pty_session: Session | None = None
        device.on_presence = self._presence

    async def start(self) -> None:
        """Listen on TCP and open the pty."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TcpProtocol(self.device, self.login), self.host, self.port, reuse_address=True
        )
        self._open_pty()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline between the client and the modem
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.pty_path = os.ttyname(slave)
        session = Session(self.device, self._pty_write, lambda: None, kind="pty")
        self._pty_session = session
        self.device.attach(session)
        asyncio.get_running_loop().add_reader(master, self._pty_readable)
        if self.pty_link is not None:
            self.pty_link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.pty_link.unlink()
            self.pty_link.symlink_to(self.pty_path)

    def _pty_write(self, data: bytes) -> None:
        if self._master is None:
            return
        try:
            os.write(self._master, data)
        except BlockingIOError:
            log.debug("pty buffer full; output dropped (nobody reads the pty)")

    def _pty_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while no client has the slave open
        if data and self._pty_session is not None:
            self._pty_session.feed(data)

    def _close_pty(self) -> None:
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
        if self._pty_session is not None:
            self._pty_session.close()
            self._pty_session = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self.pty_link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pty_link.unlink()

    def _presence(self, present: bool) -> None:
        if present:
            asyncio.get_running_loop().create_task(self._come_back())
        else:
            if self._server is not None:
                self._server.close()
                self._server = None
            self._close_pty()

    async def _come_back(self) -> None:
        if self._server is None:
            loop = asyncio.get_running_loop()
            for _ in range(50):
                try:
                    self._server = await loop.create_server(
                        lambda: _TcpProtocol(self.device, self.login),
                        self.host,
                        self.port,
                        reuse_address=True,
                    )
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        if self._master is None:
            self._open_pty()

    async def stop(self) -> None:
        """Stop listening and close the pty."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        self._close_pty()
        await self.device.close()
