"""One SMPP 3.4 session over asyncio: framing, sequence numbers, responses matched to
requests by sequence number, enquire_link keep-alive and response timeouts.

Used by the worker (ESME side). Requests from the SMSC (deliver_sm, data_sm) go to an async
handler whose answer becomes the response; everything else the SMSC may send is answered
per §4 so that an odd PDU never kills the session. Only a stream that has lost its framing
(an impossible command_length) closes the connection: nothing after it can be trusted.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import cast

from smsgw_smpp import pdu as sp
from smsgw_smpp.status import ESME_RINVCMDID, ESME_RINVCMDLEN, ESME_RX_T_APPN, status_name

log = logging.getLogger(__name__)

# At most one send to the SMSC per this many seconds while PDUs keep coming (see _write).
FLUSH_GAP = 0.001

RequestHandler = Callable[[sp.Pdu], Awaitable[int]]
"""Handles deliver_sm / data_sm; returns the command_status of the response."""


class SmppError(Exception):
    """A response with a non-zero command_status."""

    def __init__(self, status: int, command: str) -> None:
        super().__init__(f"{command}: {status_name(status)}")
        self.status = status


class Disconnected(ConnectionError):
    """The session closed before the response came; the request may have been received."""


class NotBound(Disconnected):
    """The request was not sent: no bound session."""


class ResponseTimeout(TimeoutError):
    """No response within `response_timeout`; the SMSC may have received the request."""


class SmppConnection(asyncio.Protocol):
    """The protocol object of one TCP (or TLS) connection to an SMSC."""

    def __init__(
        self,
        name: str,
        on_request: RequestHandler,
        *,
        enquire_link_interval: float = 30.0,
        response_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._on_request = on_request
        self._enquire_interval = enquire_link_interval
        self._response_timeout = response_timeout
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._last_flush = 0.0
        self._seq = 0
        # seq → (future, time sent); dict order is send order, which the sweeper relies on.
        self._pending: dict[int, tuple[asyncio.Future[sp.Pdu], float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_rx = time.monotonic()
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self.peer_unbound = False
        self.bad_pdus = 0
        self._keeper: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Without NODELAY a windowed sender stalls on delayed ACKs (DEPENDENCIES.md).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._keeper = self._loop.create_task(self._keep_alive())

    def data_received(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        self._buf += data
        frames, bad_length = sp.split_frames(self._buf)
        for frame in frames:
            self._dispatch(frame)
        if bad_length:
            self.bad_pdus += 1
            log.warning(
                "SMPP stream lost framing (command_length %d); reconnecting",
                bad_length,
                extra={"bind": self.name},
            )
            self.close("bad framing")

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._keeper is not None:
            self._keeper.cancel()
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(Disconnected(f"{self.name}: connection lost"))
        if not self.closed.done():
            self.closed.set_result(repr(exc) if exc else "closed")

    # -- sending ---------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def _write(self, data: bytes) -> None:
        # Coalesce the PDUs written in one loop iteration into one send() call, and send at
        # most once every FLUSH_GAP: under load a send carries many PDUs (each send on
        # loopback costs both ends a packet's work), idle ones go at once.
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            wait = self._last_flush + FLUSH_GAP - self._loop.time()
            if wait > 0:
                self._loop.call_later(wait, self._flush)
            else:
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._last_flush = self._loop.time()
        out, self._out = self._out, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    def _next_seq(self) -> int:
        # §3.2: sequence_number 0x00000001..0x7FFFFFFF, wrapping.
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def request(
        self,
        command_id: int,
        fields: dict[str, sp.FieldValue | str] | None = None,
        tlvs: dict[int, bytes] | None = None,
    ) -> asyncio.Future[sp.Pdu]:
        """Send a request; the future gets its response PDU (any status)."""
        fut: asyncio.Future[sp.Pdu] = self._loop.create_future()
        if not self.is_open:
            fut.set_exception(NotBound(f"{self.name}: not connected"))
            return fut
        seq = self._next_seq()
        self._pending[seq] = (fut, time.monotonic())
        self._write(sp.encode(command_id, seq, fields, tlvs))
        return fut

    def respond(
        self,
        request: sp.Pdu | int,
        command_id: int,
        status: int = 0,
        fields: dict[str, sp.FieldValue | str] | None = None,
    ) -> None:
        """Send the response to a request (or a generic_nack for a sequence number)."""
        seq = request if isinstance(request, int) else request.seq
        if self.is_open:
            self._write(sp.encode(command_id, seq, fields, None, status))

    def close(self, reason: str = "closed") -> None:
        """Close the socket now (pending requests fail with `Disconnected`)."""
        if self._out:
            self._flush()
        if self._transport is not None:
            log.debug("closing: %s", reason, extra={"bind": self.name})
            self._transport.close()

    # -- receiving -------------------------------------------------------------------------
    def _dispatch(self, frame: bytes) -> None:
        try:
            pdu = sp.decode(frame)
        except sp.UnknownCommand as exc:
            self.bad_pdus += 1
            log.warning("unknown SMPP command: %s", exc.reason, extra={"bind": self.name})
            if not exc.command_id & sp.RESP:
                # §3.3 / §4.3: an unrecognised command_id is answered with generic_nack.
                self.respond(exc.seq, sp.GENERIC_NACK, ESME_RINVCMDID)
            return
        except sp.PduDecodeError as exc:
            self.bad_pdus += 1
            log.warning("malformed SMPP PDU: %s", exc.reason, extra={"bind": self.name})
            if exc.command_id & sp.RESP:
                # The header (status, seq) is intact: deliver the response without its body.
                _, cid, status, seq = sp.HEADER.unpack_from(frame)
                self._resolve(sp.Pdu(cid, seq, status))
            else:
                self.respond(exc.seq, sp.GENERIC_NACK, ESME_RINVCMDLEN)
            return
        cid = pdu.command_id
        if cid & sp.RESP:
            self._resolve(pdu)
        elif cid == sp.ENQUIRE_LINK:
            self.respond(pdu, sp.ENQUIRE_LINK | sp.RESP)
        elif cid in (sp.DELIVER_SM, sp.DATA_SM):
            task = self._loop.create_task(self._handle(pdu))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif cid == sp.UNBIND:
            # §4.2: the SMSC ends the session; answer, close, and let the owner rebind.
            self.peer_unbound = True
            self.respond(pdu, sp.UNBIND | sp.RESP)
            self.close("unbind from SMSC")
        else:
            self.respond(pdu, sp.GENERIC_NACK, ESME_RINVCMDID)

    def _resolve(self, pdu: sp.Pdu) -> None:
        entry = self._pending.pop(pdu.seq, None)
        if entry is None:
            if pdu.command_id == sp.GENERIC_NACK:
                log.warning("generic_nack status %d", pdu.status, extra={"bind": self.name})
            else:
                log.debug("response to unknown seq %d", pdu.seq, extra={"bind": self.name})
            return
        fut = entry[0]
        if not fut.done():
            fut.set_result(pdu)

    async def _handle(self, pdu: sp.Pdu) -> None:
        try:
            status = await self._on_request(pdu)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("deliver_sm handler failed", extra={"bind": self.name})
            status = ESME_RX_T_APPN  # §5.1.3: temporary error, the SMSC will redeliver
        resp = sp.DATA_SM | sp.RESP if pdu.command_id == sp.DATA_SM else sp.DELIVER_SM | sp.RESP
        self.respond(pdu, resp, status)

    # -- keep-alive ------------------------------------------------------------------------
    async def _keep_alive(self) -> None:
        tick = min(1.0, self._response_timeout / 4, self._enquire_interval / 2)
        enquire: asyncio.Future[sp.Pdu] | None = None
        try:
            while self.is_open:
                await asyncio.sleep(tick)
                now = time.monotonic()
                self._expire(now)
                if enquire is not None and enquire.done():
                    enquire = None
                if enquire is None and now - self._last_rx >= self._enquire_interval:
                    enquire = self.request(sp.ENQUIRE_LINK)
                    enquire.add_done_callback(self._enquire_done)
        except asyncio.CancelledError:
            pass

    def _enquire_done(self, fut: asyncio.Future[sp.Pdu]) -> None:
        if fut.cancelled():
            return
        if isinstance(fut.exception(), ResponseTimeout):
            log.warning("enquire_link unanswered; reconnecting", extra={"bind": self.name})
            self.close("enquire_link timeout")

    def _expire(self, now: float) -> None:
        limit = now - self._response_timeout
        expired = []
        for seq, (_, sent) in self._pending.items():
            if sent > limit:
                break  # send order: everything after this one is younger
            expired.append(seq)
        for seq in expired:
            fut, _ = self._pending.pop(seq)
            if not fut.done():
                fut.set_exception(ResponseTimeout(f"{self.name}: no response to seq {seq}"))

    async def drain_handlers(self, timeout: float) -> None:
        """Wait (bounded) for deliver_sm handlers still running."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
