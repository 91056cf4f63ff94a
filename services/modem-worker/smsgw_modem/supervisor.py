"""One modem's life: open the port, log in, start up, watch it, reset and reopen it.

Each modem has its own supervisor task, port and locks, so one modem's hang or unplugging
never stalls another. `ready` is set while the modem is started and registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from smsgw_modem.at.engine import AtEngine, Urc
from smsgw_modem.at.errors import AtError, AtTimeout, CommandError
from smsgw_modem.at.transport import PortOpenError, open_port, run_login_script
from smsgw_modem.events import EventSink
from smsgw_modem.inbox import Inbox
from smsgw_modem.metrics import metrics
from smsgw_modem.modem import Modem, ModemInfo, csq_to_dbm
from smsgw_modem.receiver import Receiver
from smsgw_shared.amqp import Requeue
from smsgw_shared.backoff import Backoff, pause
from smsgw_shared.config import ModemConfig, Settings
from smsgw_shared.messages import Heartbeat

log = logging.getLogger(__name__)

ReadyHook = Callable[[bool], None]
QueueDepth = Callable[[], Awaitable[int | None]]

_SMS_URCS = ("+CMTI:", "+CDSI:", "+CMT:", "+CDS:")


class ModemSupervisor:
    """Keeps one modem connected and serves its AT engine to the sender and RPC."""

    def __init__(
        self,
        config: ModemConfig,
        settings: Settings,
        events: EventSink,
        *,
        draining: asyncio.Event,
        on_ready: ReadyHook | None = None,
        queue_depth: QueueDepth | None = None,
    ) -> None:
        self.config = config
        self.route = f"modem:{config.id}"
        self.heartbeat_interval = settings.workers.heartbeat_interval
        self.events = events
        self.receiver = Receiver(
            config.id,
            self.route,
            events,
            Inbox.for_modem(settings.workers.state_dir, config.id),
        )
        self.draining = draining  # the service is stopping: jobs waiting for the modem give up
        self.halt = asyncio.Event()  # close the port and return
        self.on_ready = on_ready
        self.queue_depth = queue_depth
        self.state = "connecting"
        self.modem: Modem | None = None
        self.info = ModemInfo()  # kept across sessions: heartbeats still name the modem
        self.ready = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.ussd_lock = asyncio.Lock()
        self.last_error: str | None = None
        self._cusd: list[asyncio.Future[str]] = []
        self._urcs: asyncio.Queue[Urc] = asyncio.Queue()
        self._suspect = asyncio.Event()
        self._reset = asyncio.Event()
        self._garbage_seen = 0

    # -- used by the sender and RPC ------------------------------------------------------
    async def wait_ready(self, *, wait: bool) -> Modem:
        """The connected modem; waits for it (own queue) or gives the job back (pool)."""
        while True:
            modem = self.modem
            if self.ready.is_set() and modem is not None:
                return modem
            if not wait or self.draining.is_set():
                raise Requeue(f"modem {self.config.id} is {self.state}")
            ready = asyncio.ensure_future(self.ready.wait())
            draining = asyncio.ensure_future(self.draining.wait())
            try:
                await asyncio.wait({ready, draining}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                draining.cancel()

    def suspect(self) -> None:
        """A command timed out: probe the modem now rather than at the next refresh."""
        self._suspect.set()

    def note_error(self, error: str) -> None:
        """Remember the last error for heartbeats."""
        self.last_error = error

    def expect_cusd(self) -> asyncio.Future[str]:
        """A future resolved by the next `+CUSD:` URC."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._cusd.append(fut)
        return fut

    def drop_cusd(self, fut: asyncio.Future[str]) -> None:
        """Forget a `+CUSD` waiter."""
        with contextlib.suppress(ValueError):
            self._cusd.remove(fut)
        fut.cancel()

    # -- URCs ----------------------------------------------------------------------------
    def _on_urc(self, urc: Urc) -> None:
        line = urc.line
        if line.startswith("+CUSD:"):
            waiters = [f for f in self._cusd if not f.done()]
            if waiters:
                waiters[0].set_result(line)
            else:
                log.info("unexpected USSD", extra={"modem": self.config.id, "urc": line})
        elif line.startswith("^RSSI:"):
            with contextlib.suppress(ValueError):
                dbm = csq_to_dbm(int(line.split(":", 1)[1].strip()))
                self.info.signal_dbm = dbm
        elif line.startswith(_SMS_URCS):
            self._urcs.put_nowait(urc)
        else:
            log.debug("URC", extra={"modem": self.config.id, "urc": line})

    async def _urc_loop(self, modem: Modem) -> None:
        while True:
            urc = await self._urcs.get()
            try:
                await self.receiver.handle_urc(modem, urc)
            except AtError as exc:
                log.warning(
                    "URC handling failed", extra={"modem": self.config.id, "error": str(exc)}
                )
            except Exception:
                # Never let one failure end URC handling for the rest of the session.
                log.exception("URC handling crashed", extra={"modem": self.config.id})

    async def _sweep_loop(self, modem: Modem) -> None:
        while True:
            try:
                count = await self.receiver.sweep(modem)
                if count:
                    log.info(
                        "sweep collected messages", extra={"modem": self.config.id, "count": count}
                    )
            except AtError as exc:
                log.warning("sweep failed", extra={"modem": self.config.id, "error": str(exc)})
            await asyncio.sleep(self.config.sweep_interval)

    async def _monitor_loop(self, modem: Modem) -> None:
        """Refresh signal/operator; after timeouts probe with `AT`; ask for a reset if dead."""
        engine = modem.engine
        interval = max(self.heartbeat_interval, 5.0)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._suspect.wait(), interval)
            probing = self._suspect.is_set()
            self._suspect.clear()
            try:
                if probing:
                    await engine.command("AT", min(self.config.command_timeout, 5.0))
                else:
                    await modem.refresh_network()
            except AtTimeout:
                self._suspect.set()  # keep probing until it answers or reaches the limit
            except CommandError as exc:
                log.debug("refresh failed: %s", exc)
            if engine.consecutive_timeouts >= self.config.max_timeouts:
                self.note_error(f"no answer to {engine.consecutive_timeouts} commands")
                self._reset.set()
                return

    async def _inbox_loop(self) -> None:
        """Publish what the inbox holds (after a broker outage, or left by the last run),
        connected to the modem or not."""
        while True:
            try:
                await self.receiver.flush()
            except Exception:
                log.exception("inbox flush failed", extra={"modem": self.config.id})
            await asyncio.sleep(min(self.config.sweep_interval, 5.0))

    # -- life cycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Keep the modem connected until `halt` is set."""
        beats = asyncio.create_task(self._heartbeat_loop(), name=f"hb-{self.config.id}")
        flusher = asyncio.create_task(self._inbox_loop(), name=f"inbox-{self.config.id}")
        cap = self.config.reconnect_max
        backoff = Backoff(min(1.0, cap), cap)
        try:
            while not self.halt.is_set():
                try:
                    await self._session()
                    backoff.reset()
                    continue
                except PortOpenError as exc:
                    delay = backoff.next()
                    self.state = "disconnected"
                    self.note_error(str(exc))
                    log.warning(
                        "port unavailable",
                        extra={"modem": self.config.id, "error": str(exc), "retry_in": delay},
                    )
                except AtError as exc:
                    self.state = "failed"
                    self.note_error(f"{exc.error_code}: {exc}")
                    log.warning(
                        "modem session ended", extra={"modem": self.config.id, "error": str(exc)}
                    )
                    backoff.reset()
                    delay = backoff.next()
                except Exception as exc:
                    delay = backoff.next()
                    self.state = "failed"
                    self.note_error(repr(exc))
                    log.exception("modem session crashed", extra={"modem": self.config.id})
                await pause(delay, self.halt)
        finally:
            self.state = "stopped"
            for task in (beats, flusher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.receiver.inbox.close()
            await self._beat()

    async def _session(self) -> None:
        self.state = "connecting"
        streams = await open_port(self.config.url, self.config.baudrate)
        metrics().reconnects.labels(self.config.id).inc()
        engine = AtEngine(*streams, self._on_urc, name=self.config.id)
        tasks: list[asyncio.Task[None]] = []
        self._reset.clear()
        self._suspect.clear()
        try:
            if self.config.login_script:
                await run_login_script(streams, self.config.login_script, self.config.id)
            engine.start()
            modem = Modem(engine, self.config, self.info)
            self.modem = modem
            await modem.initialize()
            self.state = "registering"
            await modem.wait_registered(self.halt)
            await modem.refresh_network()
            self.state = "connected"
            self.last_error = None
            log.info(
                "modem ready",
                extra={
                    "modem": self.config.id,
                    "model": modem.info.model,
                    "operator": modem.info.operator,
                },
            )
            self._set_ready(True)
            for coro in (self._urc_loop(modem), self._sweep_loop(modem), self._monitor_loop(modem)):
                tasks.append(asyncio.create_task(coro))
            waits = [
                asyncio.ensure_future(engine.closed.wait()),
                asyncio.ensure_future(self.halt.wait()),
                asyncio.ensure_future(self._reset.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if engine.closed.is_set():
                self.note_error(f"port lost: {engine.close_reason}")
                log.warning(
                    "port lost", extra={"modem": self.config.id, "reason": engine.close_reason}
                )
        except AtTimeout:
            self._reset.set()
            raise
        finally:
            self._set_ready(False)
            self.state = "resetting" if self._reset.is_set() else "disconnected"
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._reset.is_set() and not engine.closed.is_set():
                await self._try_reset(engine)
            await engine.close()
            self.modem = None
            self._garbage_seen = 0

    async def _try_reset(self, engine: AtEngine) -> None:
        metrics().resets.labels(self.config.id).inc()
        log.warning(
            "resetting modem", extra={"modem": self.config.id, "command": self.config.reset_command}
        )
        try:
            await engine.command(self.config.reset_command, min(self.config.command_timeout, 5.0))
        except AtError as exc:
            log.info("reset command not answered: %s; reopening the port", exc)

    def _set_ready(self, ready: bool) -> None:
        if ready == self.ready.is_set():
            return
        if ready:
            self.ready.set()
        else:
            self.ready.clear()
        metrics().connected.labels(self.config.id).set(1 if ready else 0)
        if self.on_ready is not None:
            self.on_ready(ready)

    # -- heartbeats ----------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(self.heartbeat_interval)

    async def _beat(self) -> None:
        modem = self.modem
        info = self.info
        if modem is not None:
            new = modem.engine.garbage_count - self._garbage_seen
            if new > 0:
                metrics().garbage.labels(self.config.id).inc(new)
                self._garbage_seen = modem.engine.garbage_count
        if info.signal_dbm is not None and self.ready.is_set():
            metrics().signal_dbm.labels(self.config.id).set(info.signal_dbm)
        depth = None
        if self.queue_depth is not None:
            with contextlib.suppress(Exception):
                depth = await asyncio.wait_for(self.queue_depth(), 2.0)
        details = {
            "last_error": self.last_error,
            "url": self.config.url,
        }
        details |= {
            "imei": info.imei,
            "imsi": info.imsi,
            "iccid": info.iccid,
            "model": info.model,
            "manufacturer": info.manufacturer,
            "registration": info.registration,
            "smsc": info.smsc,
        }
        await self.events.heartbeat(
            Heartbeat(
                route=self.route,
                kind="modem",
                state=self.state,
                connected=self.ready.is_set(),
                signal_dbm=info.signal_dbm if self.ready.is_set() else None,
                operator=info.operator,
                queue_depth=depth,
                in_flight=1 if self.send_lock.locked() else 0,
                details=details,
                interval=self.heartbeat_interval,
            )
        )
