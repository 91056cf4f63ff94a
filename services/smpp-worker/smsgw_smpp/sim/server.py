"""The simulated SMSC: an asyncio SMPP 3.4 server (one `SmscSession` per connection).

Hot path (submit_sm → submit_sm_resp) is kept short: decode, pick an id, append a record,
write the response into a per-iteration write buffer. Everything else (receipts, MO
injection, faults) hangs off `SmscServer`, which the HTTP control interface drives.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Literal, cast

from smsgw_smpp import pdu as sp
from smsgw_smpp import status as st
from smsgw_smpp.sim.receipts import build_receipt
from smsgw_smpp.sim.state import (
    IdSource,
    SimConfig,
    SimStats,
    Submitted,
    TokenBucket,
)

log = logging.getLogger(__name__)

BindKind = Literal["transceiver", "transmitter", "receiver"]
_BINDS: dict[int, BindKind] = {
    sp.BIND_TRANSCEIVER: "transceiver",
    sp.BIND_TRANSMITTER: "transmitter",
    sp.BIND_RECEIVER: "receiver",
}


class SmscSession(asyncio.Protocol):
    """One ESME connection."""

    def __init__(self, server: SmscServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.kind: BindKind | None = None
        self.system_id = ""
        self.seq = 0
        self.waiting: dict[int, asyncio.Future[sp.Pdu]] = {}
        self.peer = ""

    # -- transport ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.peer = str(transport.get_extra_info("peername"))
        self.server.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.sessions.discard(self)
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("session closed"))

    def write(self, data: bytes) -> None:
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        out, self.out = self.out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def close(self) -> None:
        if self.out:
            self.flush()
        if self.transport is not None:
            self.transport.close()

    @property
    def can_receive(self) -> bool:
        return self.kind in ("transceiver", "receiver") and self.transport is not None

    def next_seq(self) -> int:
        self.seq = self.seq % 0x7FFFFFFF + 1
        return self.seq

    def send_request(
        self,
        command_id: int,
        fields: dict[str, sp.FieldValue | str],
        tlvs: dict[int, bytes] | None = None,
    ) -> asyncio.Future[sp.Pdu]:
        """Write a request to the ESME; the future gets its response."""
        fut: asyncio.Future[sp.Pdu] = asyncio.get_running_loop().create_future()
        seq = self.next_seq()
        self.waiting[seq] = fut
        self.write(sp.encode(command_id, seq, fields, tlvs))
        return fut

    # -- receiving ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.buf += data
        frames, bad = sp.split_frames(self.buf)
        for frame in frames:
            self.dispatch(frame)
        if bad:
            self.server.stats.bad_pdus += 1
            self.close()

    def dispatch(self, frame: bytes) -> None:
        srv = self.server
        try:
            pdu = sp.decode(frame)
        except sp.PduDecodeError as exc:
            srv.stats.bad_pdus += 1
            if not exc.command_id & sp.RESP:
                code = (
                    st.ESME_RINVCMDID if isinstance(exc, sp.UnknownCommand) else st.ESME_RINVCMDLEN
                )
                self.write(sp.encode(sp.GENERIC_NACK, exc.seq, status=code))
            return
        cid = pdu.command_id
        if cid == sp.SUBMIT_SM:
            srv.on_submit(self, pdu)
        elif cid & sp.RESP:
            fut = self.waiting.pop(pdu.seq, None)
            if cid == sp.GENERIC_NACK:
                srv.stats.generic_nacks_received += 1
            if fut is not None and not fut.done():
                fut.set_result(pdu)
        elif cid == sp.ENQUIRE_LINK:
            srv.stats.enquire_links += 1
            self.write(sp.encode(sp.ENQUIRE_LINK | sp.RESP, pdu.seq))
        elif cid in _BINDS:
            srv.on_bind(self, pdu)
        elif cid == sp.QUERY_SM:
            srv.on_query(self, pdu)
        elif cid == sp.UNBIND:
            srv.stats.unbinds_received += 1
            self.write(sp.encode(sp.UNBIND | sp.RESP, pdu.seq))
            self.kind = None
            self.close()
        else:
            self.write(sp.encode(sp.GENERIC_NACK, pdu.seq, status=st.ESME_RINVCMDID))


def _closer(session: SmscSession) -> Callable[[asyncio.Future[sp.Pdu]], None]:
    def close(_: asyncio.Future[sp.Pdu]) -> None:
        session.close()

    return close


class SmscServer:
    """Shared state of the simulated SMSC: config, records, sessions, pending receipts."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self.records: list[Submitted] = []
        self.by_id: dict[str, Submitted] = {}
        self.sessions: set[SmscSession] = set()
        self.ids = IdSource()
        self.bucket = TokenBucket()
        self.held: list[tuple[SmscSession, bytes]] = []
        self.pending_receipts: list[tuple[str, dict[str, Any], dict[int, bytes]]] = []
        self._loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._started = time.monotonic()
        self.drop_countdown: int | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port."""
        self._server = await self._loop.create_server(lambda: SmscSession(self), host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and every session."""
        if self._server is not None:
            self._server.close()
        for s in list(self.sessions):
            s.close()
        if self._server is not None:
            await self._server.wait_closed()

    def reset(self) -> None:
        """Forget records and counters (not the configuration)."""
        self.records.clear()
        self.by_id.clear()
        self.stats = SimStats()
        self._started = time.monotonic()

    def configure(self, changes: dict[str, Any]) -> None:
        """Apply `POST /config` changes (KeyError for an unknown key)."""
        self.config.update(changes)
        if self.config.drop_after is not None:
            self.drop_countdown, self.config.drop_after = self.config.drop_after, None
        if not self.config.hold and self.held:
            self.release_held()

    # -- binds ---------------------------------------------------------------------------
    def on_bind(self, session: SmscSession, pdu: sp.Pdu) -> None:
        cfg = self.config
        resp_id = pdu.command_id | sp.RESP
        if session.kind is not None:
            status = st.ESME_RALYBND
        elif pdu.text("system_id") != cfg.system_id:
            status = st.ESME_RINVSYSID
        elif pdu.text("password") != cfg.password:
            status = st.ESME_RINVPASWD
        else:
            status = 0
        if status:
            self.stats.bind_failures += 1
            session.write(sp.encode(resp_id, pdu.seq, status=status))
            return
        self.stats.binds += 1
        session.kind = _BINDS[pdu.command_id]
        session.system_id = pdu.text("system_id")
        session.write(
            sp.encode(
                resp_id,
                pdu.seq,
                {"system_id": "smsgw-sim"},
                {sp.TLV_SC_INTERFACE_VERSION: bytes((sp.INTERFACE_VERSION,))},
            )
        )
        if session.can_receive and self.pending_receipts:
            pending, self.pending_receipts = self.pending_receipts, []
            for system_id, fields, tlvs in pending:
                self.deliver(system_id, fields, tlvs)

    # -- submit_sm -----------------------------------------------------------------------
    def on_submit(self, session: SmscSession, pdu: sp.Pdu) -> None:
        cfg = self.config
        stats = self.stats
        stats.submits += 1
        if self.drop_countdown is not None:
            if self.drop_countdown <= 0:
                self.drop_countdown = None
                stats.disconnects += 1
                session.close()  # this submit_sm stays unanswered
                return
            self.drop_countdown -= 1
        if session.kind not in ("transceiver", "transmitter"):
            status = st.ESME_RINVBNDSTS
        elif not self.bucket.allow(cfg.tps):
            stats.throttled += 1
            status = st.ESME_RTHROTTLED
        else:
            status = cfg.take_error()
            if status:
                stats.errors_injected += 1
        if status:
            self._answer(session, sp.encode(sp.SUBMIT_SM | sp.RESP, pdu.seq, status=status))
            return
        message_id = self.ids.next(cfg.id_format)
        rec = Submitted(message_id, pdu, session.system_id, time.time())
        self.records.append(rec)
        self.by_id[message_id] = rec
        stats.accepted += 1
        resp = sp.encode(sp.SUBMIT_SM | sp.RESP, pdu.seq, {"message_id": message_id})
        if pdu.num("registered_delivery") & 0x03:
            if cfg.early_receipts:
                self.send_receipt(rec)  # written before the response, on purpose
            else:
                self._schedule_receipt(rec)
        self._answer(session, resp)

    def _answer(self, session: SmscSession, data: bytes) -> None:
        if self.config.hold:
            self.held.append((session, data))
        elif self.config.submit_latency > 0:
            self._loop.call_later(self.config.submit_latency, session.write, data)
        else:
            session.write(data)

    def release_held(self) -> int:
        """Send every submit_sm_resp kept back by `hold` (to sessions still open)."""
        held, self.held = self.held, []
        for session, data in held:
            if session.transport is not None:
                session.write(data)
        return len(held)

    # -- receipts ------------------------------------------------------------------------
    def _schedule_receipt(self, rec: Submitted) -> None:
        if self.config.intermediate:
            self._loop.call_soon(self.send_receipt, rec, "ENROUTE")
        self._loop.call_later(self.config.dlr_delay, self.send_receipt, rec)

    def send_receipt(self, rec: Submitted, stat: str | None = None) -> None:
        """Send the receipt for `rec` now (twice if configured)."""
        cfg = self.config
        fields, tlvs = build_receipt(rec, cfg, stat or cfg.pick_outcome())
        copies = 2 if cfg.duplicate_receipts else 1
        for _ in range(copies):
            self.deliver(rec.system_id, fields, tlvs)
            self.stats.receipts_sent += 1

    def receiver_for(self, system_id: str | None) -> SmscSession | None:
        """A bound session that can take deliver_sm (same system_id when given)."""
        for s in self.sessions:
            if s.can_receive and (system_id is None or s.system_id == system_id):
                return s
        return None

    def deliver(
        self,
        system_id: str | None,
        fields: dict[str, Any],
        tlvs: dict[int, bytes] | None = None,
    ) -> asyncio.Future[sp.Pdu] | None:
        """Send a deliver_sm now, or keep it until a receiver binds (returns None then)."""
        session = self.receiver_for(system_id)
        if session is None:
            self.pending_receipts.append((system_id or self.config.system_id, fields, tlvs or {}))
            return None
        self.stats.deliver_sm_sent += 1
        fut = session.send_request(sp.DELIVER_SM, fields, tlvs)
        fut.add_done_callback(self._count_resp)
        return fut

    def _count_resp(self, fut: asyncio.Future[sp.Pdu]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            key = "lost"
        else:
            key = st.status_name(fut.result().status)
        self.stats.deliver_resp[key] = self.stats.deliver_resp.get(key, 0) + 1

    # -- query_sm ------------------------------------------------------------------------
    def on_query(self, session: SmscSession, pdu: sp.Pdu) -> None:
        self.stats.queries += 1
        rec = self.by_id.get(pdu.text("message_id"))
        if rec is None:
            session.write(sp.encode(sp.QUERY_SM | sp.RESP, pdu.seq, status=st.ESME_RQUERYFAIL))
            return
        fields: dict[str, sp.FieldValue | str] = {
            "message_id": rec.message_id,
            "final_date": rec.final_date,
            "message_state": rec.state,
            "error_code": rec.error & 0xFF,
        }
        session.write(sp.encode(sp.QUERY_SM | sp.RESP, pdu.seq, fields))

    # -- faults --------------------------------------------------------------------------
    def disconnect(self, mode: str = "close", system_id: str | None = None) -> int:
        """Drop (or unbind) every matching session; returns how many."""
        n = 0
        for s in list(self.sessions):
            if system_id is not None and s.system_id != system_id:
                continue
            n += 1
            self.stats.disconnects += 1
            if mode == "unbind":
                s.send_request(sp.UNBIND, {}).add_done_callback(_closer(s))
            else:
                s.close()
        return n

    def rate(self) -> float:
        """Average accepted submit_sm/s since start or reset."""
        return self.stats.submits / max(1e-6, time.monotonic() - self._started)
