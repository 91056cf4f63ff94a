"""The AT engine: one command at a time under a write lock, URCs dispatched on the side.

python-gsmmodem's split: this layer frames lines and tells command responses from
unsolicited result codes; `smsgw_modem.modem` gives the commands their meaning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smsgw_modem.at.errors import AtTimeout, PortClosed, final_error
from smsgw_modem.at.framing import (
    TWO_LINE_URCS,
    Garbage,
    Line,
    LineSplitter,
    Prompt,
    is_final_error,
    is_final_ok,
    is_urc,
    response_prefix,
)

log = logging.getLogger(__name__)

CTRL_Z = "\x1a"
ESC = "\x1b"


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code; `pdu` is the second line of `+CMT`/`+CDS`."""

    line: str
    pdu: str | None = None


UrcHandler = Callable[[Urc], None]


def _future() -> asyncio.Future[list[str]]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Pending:
    command: str
    echo: set[str]
    prefix: str | None
    lines: list[str] = field(default_factory=list)
    done: asyncio.Future[list[str]] = field(default_factory=_future)
    prompt: asyncio.Event = field(default_factory=asyncio.Event)
    expect: str | None = None  # script mode: finish on the first line containing this
    tap_urcs: bool = False


class AtEngine:
    """Runs AT commands over a stream pair and hands URCs to `on_urc`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_urc: UrcHandler,
        *,
        name: str = "modem",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_urc = on_urc
        self.name = name
        self._splitter = LineSplitter()
        self._lock = asyncio.Lock()
        self._pending: _Pending | None = None
        self._two_line: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self.consecutive_timeouts = 0
        self._stale = False  # a command timed out: its late answer may still be coming
        self.garbage_count = 0
        self.last_rx = time.monotonic()

    def start(self) -> None:
        """Start reading the port."""
        self._task = asyncio.create_task(self._read_loop(), name=f"at-read-{self.name}")

    async def close(self, reason: str = "closed") -> None:
        """Stop reading and close the port; pending commands fail with PortClosed."""
        self._mark_closed(reason)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            self._writer.close()

    def _mark_closed(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        pending = self._pending
        if pending is not None and not pending.done.done():
            pending.done.set_exception(PortClosed(reason))

    # -- reading -------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        reason = "port closed"
        try:
            while True:
                data = await self._reader.read(4096)
                if not data:
                    break
                self.last_rx = time.monotonic()
                for token in self._splitter.feed(data):
                    self._dispatch(token)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # SerialException, OSError: the device went away
            reason = f"read failed: {exc!r}"
        finally:
            self._mark_closed(reason)

    def _dispatch(self, token: Line | Prompt | Garbage) -> None:
        pending = self._pending
        if isinstance(token, Garbage):
            self.garbage_count += 1
            log.warning(
                "garbage from modem skipped",
                extra={"modem": self.name, "raw": token.data[:64].hex()},
            )
            return
        if isinstance(token, Prompt):
            if pending is not None:
                pending.prompt.set()
            return
        line = token.text
        if self._two_line is not None:
            header, self._two_line = self._two_line, None
            self._emit(Urc(header, line))
            return
        if pending is not None and line in pending.echo:
            return  # echo of what we typed (ATE1)
        if pending is not None and pending.expect is not None and pending.expect in line:
            pending.lines.append(line)
            self._finish(pending, None)
            return
        if pending is not None and is_final_ok(line):
            if pending.expect is None or pending.expect in line:
                self._finish(pending, None)
            return
        if pending is not None and is_final_error(line):
            self._finish(pending, line)
            return
        own_response = (
            pending is not None and pending.prefix is not None and line.startswith(pending.prefix)
        )
        if is_urc(line) and not own_response:
            if pending is not None and pending.tap_urcs:
                pending.lines.append(line)
            if line.startswith(TWO_LINE_URCS):
                self._two_line = line
                return
            self._emit(Urc(line))
            return
        if pending is not None:
            pending.lines.append(line)
        else:
            log.debug("unsolicited line ignored", extra={"modem": self.name, "line": line[:120]})

    def _finish(self, pending: _Pending, error_line: str | None) -> None:
        if pending.done.done():
            return
        if error_line is None:
            pending.done.set_result(pending.lines)
        else:
            pending.done.set_exception(final_error(pending.command, error_line))

    def _emit(self, urc: Urc) -> None:
        try:
            self._on_urc(urc)
        except Exception:
            log.exception("URC handler failed", extra={"modem": self.name, "urc": urc.line})

    # -- writing -------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        if self.closed.is_set():
            raise PortClosed(self.close_reason or "closed")
        try:
            self._writer.write(text.encode("utf-8", errors="replace"))
        except Exception as exc:
            self._mark_closed(f"write failed: {exc!r}")
            raise PortClosed(f"write failed: {exc!r}") from exc

    async def _wait(self, fut: asyncio.Future[list[str]], timeout: float, what: str) -> list[str]:
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError as exc:
            self.consecutive_timeouts += 1
            self._stale = True
            raise AtTimeout(f"{what!r}: no answer within {timeout:g}s") from exc
        self.consecutive_timeouts = 0
        return result

    async def _settle(self, quiet: float = 0.2, limit: float = 1.0) -> None:
        """After a timeout, let a late answer arrive and be dropped before the next command,
        so that its `OK` is not taken for the next command's (called with no command pending)."""
        if not self._stale:
            return
        self._stale = False
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and time.monotonic() - self.last_rx < quiet:  # noqa: ASYNC110 - waits for silence, not for an event
            await asyncio.sleep(quiet / 4)

    async def command(self, command: str, timeout: float = 10.0) -> list[str]:
        """Send one command line; return its information lines; raise on an error result."""
        async with self._lock:
            await self._settle()
            pending = _Pending(command, {command}, response_prefix(command))
            self._pending = pending
            try:
                self._write(command + "\r")
                return await self._wait(pending.done, timeout, command)
            finally:
                self._pending = None

    async def command_with_pdu(
        self, command: str, pdu: str, *, prompt_timeout: float = 10.0, timeout: float = 60.0
    ) -> list[str]:
        """`AT+CMGS=<n>`: wait for the `> ` prompt, send the PDU and Ctrl-Z (TS 27.005 §3.5.1)."""
        async with self._lock:
            await self._settle()
            pending = _Pending(command, {command, pdu}, response_prefix(command))
            self._pending = pending
            try:
                self._write(command + "\r")
                prompt = asyncio.ensure_future(pending.prompt.wait())
                try:
                    waits: set[asyncio.Future[Any]] = {prompt, pending.done}
                    await asyncio.wait(
                        waits,
                        timeout=prompt_timeout,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    prompt.cancel()
                if pending.done.done():
                    pending.done.result()  # an error before the prompt: raise it
                    raise AtTimeout(f"{command!r}: finished without a prompt")
                if not pending.prompt.is_set():
                    with contextlib.suppress(PortClosed):
                        self._write(ESC)  # cancel the half-entered command
                    # A live modem answers the ESC (27.005 §3.5.1): take that answer here.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(pending.done), 1.0)
                    self.consecutive_timeouts += 1
                    self._stale = True
                    raise AtTimeout(f"{command!r}: no '> ' prompt within {prompt_timeout:g}s")
                self._write(pdu + CTRL_Z)
                return await self._wait(pending.done, timeout, command)
            finally:
                self._pending = None

    async def exchange(
        self, send: str, expect: str, timeout: float, *, raw: bool = False
    ) -> list[str]:
        """A script step: send, then collect every line (URCs too) until one contains `expect`."""
        async with self._lock:
            await self._settle()
            pending = _Pending(send, {send}, response_prefix(send), expect=expect, tap_urcs=True)
            self._pending = pending
            try:
                self._write(send if raw else send + "\r")
                return await self._wait(pending.done, timeout, send)
            finally:
                self._pending = None
