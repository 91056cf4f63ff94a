"""One client connection to a simulated modem (TCP or pty): input framing, echo, login.

V.250 §5.2: a command line ends with CR (S3); after the `+CMGS` prompt the input is a PDU
ended by Ctrl-Z (send) or ESC (cancel), TS 27.005 §3.5.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smsgw_modem.sim.device import SimDevice

log = logging.getLogger(__name__)

CTRL_Z = 0x1A
ESC = 0x1B


@dataclass(frozen=True)
class LoginSpec:
    """A Portech-style login asked before AT commands: user, password, module select."""

    user: str = "admin"
    password: str = "admin"
    module: str = "module1"


class Session:
    """Reads bytes from a client, runs its commands in order, writes the answers."""

    def __init__(
        self,
        device: SimDevice,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        *,
        kind: str,
        login: LoginSpec | None = None,
    ) -> None:
        self.device = device
        self._write = write
        self._close = close
        self.kind = kind
        self.closed = False
        self._buf = bytearray()
        self._wakeup = asyncio.Event()
        self._pdu_length: int | None = None  # set while waiting for a PDU after the prompt
        self._login_stage = 0 if login else 3
        self._login = login
        self._user = ""
        self._task = asyncio.create_task(self._run(), name=f"sim-session-{device.state.n}")

    # -- transport side ------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.closed or self.device.gone:
            return
        if self.device.state.faults.is_hung():
            return  # a hung modem neither echoes nor answers
        if self._login_stage == 3 and self.device.state.echo:
            self.write(data)
        elif self._login_stage in (0, 2):
            self.write(data)  # a telnet login echoes the user name and module, not the password
        self._buf += data
        self._wakeup.set()

    def write(self, data: bytes | str) -> None:
        """Send bytes to the client (ignored once closed)."""
        if self.closed:
            return
        raw = data.encode() if isinstance(data, str) else data
        try:
            self._write(raw)
        except Exception as exc:
            log.debug("session write failed: %r", exc)
            self.close()

    def close(self) -> None:
        """Drop the connection."""
        if self.closed:
            return
        self.closed = True
        self._task.cancel()
        with contextlib.suppress(Exception):
            self._close()
        self.device.detach(self)

    def expect_pdu(self, length: int) -> None:
        """After `> `: the next input is a PDU of `length` TPDU octets."""
        self._pdu_length = length

    # -- processing ----------------------------------------------------------------------
    async def _run(self) -> None:
        if self._login is not None:
            self.write("\r\nusername: ")
        while not self.closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            while not self.closed:
                if not await self._step():
                    break

    async def _step(self) -> bool:
        if self._pdu_length is not None:
            end = next((i for i, b in enumerate(self._buf) if b in (CTRL_Z, ESC)), None)
            if end is None:
                return False
            pdu = bytes(self._buf[:end]).decode("ascii", errors="replace").strip()
            cancel = self._buf[end] == ESC
            del self._buf[: end + 1]
            length, self._pdu_length = self._pdu_length, None
            await self.device.submit(self, pdu, length, cancel=cancel)
            return True
        end = next((i for i, b in enumerate(self._buf) if b in (0x0D, 0x0A)), None)
        if end is None:
            return False
        line = bytes(self._buf[:end]).decode("utf-8", errors="replace").strip()
        del self._buf[: end + 1]
        if self._login_stage < 3:
            if line:  # CR LF gives an empty line after each answer
                self._login_step(line)
            return True
        if line:
            await self.device.execute(self, line)
        return True

    def _login_step(self, line: str) -> None:
        spec = self._login
        assert spec is not None
        if self._login_stage == 0:
            self._user = line
            self.write("\r\npassword: ")
            self._login_stage = 1
        elif self._login_stage == 1:
            if self._user != spec.user or line != spec.password:
                self.write("\r\nlogin failed\r\n")
                self.close()
                return
            self.write("\r\n[login ok]\r\ncommand: ")
            self._login_stage = 2
        elif line == spec.module:
            self.write(f"\r\ngot!! press 'ctrl-x' to release {spec.module}.\r\n")
            self._login_stage = 3
        else:
            self.write("\r\nunknown command\r\ncommand: ")
