"""Opening a modem port: a serial device or `socket://host:port`, and an optional login script."""

from __future__ import annotations

import asyncio
import logging
import time

import serial
import serial_asyncio_fast

from smsgw_modem.at.errors import AtError, AtTimeout, PortClosed
from smsgw_shared.config import ScriptStep

log = logging.getLogger(__name__)

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class PortOpenError(AtError):
    """The device or network port cannot be opened (unplugged, refused, busy)."""

    code_name = "PORT_OPEN"


class LoginFailed(AtError):
    """A login script step did not see what it expected."""

    code_name = "LOGIN_FAILED"


async def open_port(url: str, baudrate: int, timeout: float = 10.0) -> Streams:
    """Open a serial device or a `socket://` URL as an asyncio stream pair."""
    try:
        # pyserial-asyncio-fast: serial_for_url handles both devices and socket:// URLs.
        return await asyncio.wait_for(
            serial_asyncio_fast.open_serial_connection(
                url=url, baudrate=baudrate, rtscts=False, dsrdtr=False
            ),
            timeout,
        )
    except (serial.SerialException, OSError, ValueError, TimeoutError) as exc:
        raise PortOpenError(f"cannot open {url}: {exc}") from exc


async def run_login_script(streams: Streams, steps: list[ScriptStep], name: str) -> str:
    """Run a Portech-style login (user, password, module select) on the raw byte stream.

    Telnet prompts such as `username:` end without a newline, so this matches on the
    accumulated text rather than on lines. Returns what was read, for the log.
    """
    reader, writer = streams
    seen = ""
    for step in steps:
        writer.write((step.send if step.raw else step.send + "\r\n").encode())
        window = ""
        deadline = time.monotonic() + step.timeout
        while step.expect.lower() not in window.lower():
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoginFailed(f"{name}: login step {step.send!r}: {step.expect!r} not seen")
            try:
                data = await asyncio.wait_for(reader.read(1024), left)
            except TimeoutError as exc:
                raise AtTimeout(f"{name}: login step {step.send!r} timed out") from exc
            except Exception as exc:
                raise PortClosed(f"{name}: read failed during login: {exc!r}") from exc
            if not data:
                raise PortClosed(f"{name}: port closed during login")
            window += data.decode("utf-8", errors="replace")
        seen += window
        log.debug("login step done", extra={"modem": name, "step": step.send})
    return seen
