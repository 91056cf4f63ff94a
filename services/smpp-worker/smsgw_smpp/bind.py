"""One configured bind: its session(s), reconnection, window and rate limit.

A transceiver bind has one session; `transmitter_receiver` has two (bind_transmitter for
submit_sm/query_sm, bind_receiver for deliver_sm), each reconnecting on its own. Sessions
reconnect with jittered exponential backoff (reconnect_min..reconnect_max), so a fleet of
workers does not hammer an SMSC that just came back; an unbind from the SMSC (§4.2) is
answered and followed by a prompt rebind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any, Literal

from smsgw_shared.backoff import Backoff, pause
from smsgw_shared.config import SmppBindConfig
from smsgw_smpp import pdu as sp
from smsgw_smpp.connection import NotBound, RequestHandler, SmppConnection
from smsgw_smpp.metrics import SmppMetrics
from smsgw_smpp.status import ESME_RINVBNDSTS, THROTTLE, status_name
from smsgw_smpp.throttle import AdaptiveRate

log = logging.getLogger(__name__)

SessionKind = Literal["transceiver", "transmitter", "receiver"]
_BIND_COMMANDS = {
    "transceiver": sp.BIND_TRANSCEIVER,
    "transmitter": sp.BIND_TRANSMITTER,
    "receiver": sp.BIND_RECEIVER,
}


class BindRefused(ConnectionError):
    """The SMSC answered the bind with an error status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {status_name(status)}")
        self.status = status


class SmppBind:
    """Keeps a bind up and sends through it; `submit` is safe from many coroutines."""

    def __init__(
        self,
        cfg: SmppBindConfig,
        on_request: RequestHandler,
        metrics: SmppMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.route = f"smpp:{cfg.id}"
        self._on_request = on_request
        self.metrics = metrics or SmppMetrics()
        self.rate = AdaptiveRate(cfg.tps)
        self._window = asyncio.Semaphore(cfg.window)
        self.in_flight = 0
        self.bound = asyncio.Event()  # the sending session is bound
        self.lost = asyncio.Event()  # … and its opposite, for waiters on a drop
        self.lost.set()
        self.sessions: dict[SessionKind, SmppConnection | None] = {}
        self.session_state: dict[SessionKind, str] = {}
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.reconnects = 0
        self.bad_pdus = 0
        kinds: list[SessionKind] = (
            ["transceiver"] if cfg.mode == "transceiver" else ["transmitter", "receiver"]
        )
        self._send_kind: SessionKind = kinds[0]
        for kind in kinds:
            self.sessions[kind] = None
            self.session_state[kind] = "connecting"
        m = self.metrics
        self._m_window = m.window.labels(cfg.id)
        self._m_latency = m.latency.labels(cfg.id)
        self._m_ok = m.submits.labels(cfg.id, "ESME_ROK")

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """bound | throttled | connecting | disconnected | stopped (of the sending session)."""
        if self._stop.is_set():
            return "stopped"
        s = self.session_state[self._send_kind]
        if s == "bound" and self.rate.is_throttled:
            return "throttled"
        return s

    @property
    def connected(self) -> bool:
        return self.bound.is_set()

    # -- life ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the session loops (connect, bind, reconnect) in the background."""
        for kind in self.sessions:
            self._loops.append(asyncio.create_task(self._session_loop(kind)))

    async def _open(self, kind: SessionKind) -> SmppConnection:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        ctx = None
        if cfg.tls:
            ctx = ssl.create_default_context()
            if not cfg.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: SmppConnection(
                    f"{cfg.id}/{kind}",
                    self._on_request,
                    enquire_link_interval=cfg.enquire_link_interval,
                    response_timeout=cfg.response_timeout,
                ),
                cfg.host,
                cfg.port,
                ssl=ctx,
            ),
            cfg.response_timeout,
        )
        fields: dict[str, sp.FieldValue | str] = {
            "system_id": cfg.system_id,
            "password": cfg.password,
            "system_type": cfg.system_type,
            "interface_version": sp.INTERFACE_VERSION,
            "addr_ton": cfg.source_ton if cfg.address_range else 0,
            "addr_npi": cfg.source_npi if cfg.address_range else 0,
            "address_range": cfg.address_range,
        }
        try:
            resp = await asyncio.wait_for(
                conn.request(_BIND_COMMANDS[kind], fields), cfg.response_timeout
            )
        except BaseException:
            conn.close("bind failed")
            raise
        if resp.status != 0:
            conn.close("bind refused")
            raise BindRefused(resp.status)
        return conn

    async def _session_loop(self, kind: SessionKind) -> None:
        low = self.cfg.reconnect_min
        backoff = Backoff(low, max(low, self.cfg.reconnect_max))
        first = True
        while not self._stop.is_set():
            self.session_state[kind] = "connecting"
            try:
                conn = await self._open(kind)
            except Exception as exc:  # refused, unreachable, TLS, timeout: all back off
                if not isinstance(exc, (OSError, TimeoutError)):
                    log.exception("unexpected error opening %s/%s", self.id, kind)
                self.session_state[kind] = "disconnected"
                delay = backoff.next()
                log.warning(
                    "bind %s/%s failed (%s); retry in %.1fs",
                    self.id,
                    kind,
                    exc,
                    delay,
                    extra={"bind": self.id},
                )
                await pause(delay, self._stop)
                continue
            backoff.reset()
            if not first:
                self.reconnects += 1
                self.metrics.reconnects.labels(self.id).inc()
            first = False
            self.sessions[kind] = conn
            self.session_state[kind] = "bound"
            if kind == self._send_kind:
                self.bound.set()
                self.lost.clear()
                self.metrics.bound.labels(self.id).set(1)
            log.info("bound %s/%s to %s:%d", self.id, kind, self.cfg.host, self.cfg.port)
            stop_wait = asyncio.ensure_future(self._stop.wait())
            waiters: list[asyncio.Future[Any]] = [conn.closed, stop_wait]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if kind == self._send_kind:
                self.bound.clear()
                self.lost.set()
                self.metrics.bound.labels(self.id).set(0)
            self.bad_pdus += conn.bad_pdus
            self.metrics.bad_pdus.labels(self.id).inc(conn.bad_pdus)
            if self._stop.is_set():
                self.sessions[kind] = conn  # `stop()` unbinds it
                return
            self.sessions[kind] = None
            self.session_state[kind] = "disconnected"
            reason = conn.closed.result() if conn.closed.done() else "?"
            log.warning("session %s/%s lost: %s", self.id, kind, reason, extra={"bind": self.id})
            # After an unbind from the SMSC rebind promptly; after a drop, back off a little.
            await pause(low if conn.peer_unbound else backoff.next(), self._stop)

    async def wait_drained(self, timeout: float) -> None:
        """Wait (bounded) until no submit_sm is outstanding."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.05)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop reconnecting, let the window drain (bounded), unbind gracefully (§4.2)."""
        await self.wait_drained(drain_timeout)
        self._stop.set()
        if self._loops:
            await asyncio.wait(self._loops, timeout=drain_timeout)
        for kind, conn in list(self.sessions.items()):
            if conn is None or not conn.is_open:
                continue
            await conn.drain_handlers(min(drain_timeout, 5.0))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.request(sp.UNBIND), min(self.cfg.response_timeout, 5))
            conn.close("unbound")
            self.sessions[kind] = None
        self.bound.clear()
        self.lost.set()
        self.metrics.bound.labels(self.id).set(0)

    # -- sending ---------------------------------------------------------------------------
    async def request(
        self,
        command_id: int,
        fields: dict[str, sp.FieldValue | str],
        tlvs: dict[int, bytes] | None = None,
    ) -> sp.Pdu:
        """Send one request on the sending session inside the window and the rate limit.

        Raises `Disconnected` (not bound, or lost before the response) or `ResponseTimeout`.
        """
        async with self._window:
            conn = self.sessions[self._send_kind]
            if conn is None or not self.bound.is_set():
                raise NotBound(f"{self.id}: not bound")
            await self.rate.acquire(1)
            self.in_flight += 1
            self._m_window.inc()
            t0 = time.perf_counter()
            try:
                resp = await conn.request(command_id, fields, tlvs)
            finally:
                self.in_flight -= 1
                self._m_window.dec()
            self._m_latency.observe(time.perf_counter() - t0)
        status = resp.status
        if command_id == sp.SUBMIT_SM:
            if status == 0:
                self._m_ok.inc()
            else:
                self.metrics.submits.labels(self.id, status_name(status)).inc()
        if status in THROTTLE:
            self.rate.throttled()
            self.metrics.throttled.labels(self.id).set(1)
        elif status == ESME_RINVBNDSTS:
            # The SMSC no longer considers us bound: rebind rather than keep failing.
            conn.close("SMSC says not bound")
        return resp

    async def submit(
        self, fields: dict[str, sp.FieldValue | str], tlvs: dict[int, bytes] | None = None
    ) -> sp.Pdu:
        """submit_sm → its response (any status)."""
        return await self.request(sp.SUBMIT_SM, fields, tlvs)

    async def wait_bound(self, timeout: float) -> bool:
        """Wait up to `timeout` for the sending session to be bound."""
        if self.bound.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.bound.wait(), timeout)
        return self.bound.is_set()

    def update_gauges(self) -> None:
        """Refresh gauges that are states rather than events."""
        self.rate.refresh()
        self.metrics.throttled.labels(self.id).set(1 if self.rate.is_throttled else 0)
        self.metrics.rate.labels(self.id).set(self.rate.rate)
