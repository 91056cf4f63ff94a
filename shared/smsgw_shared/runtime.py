"""Process plumbing shared by every service: signals, logging, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from smsgw_shared.config import Settings
from smsgw_shared.observability.logging import setup_logging

log = logging.getLogger(__name__)

# Closing connections, unbinding, publishing a last heartbeat: what a stop may take on top
# of `shutdown_timeout` before the process is ended without finishing it.
SHUTDOWN_SLACK = 15.0


@dataclass
class ShutdownReport:
    """What a service had in hand when told to stop, and what it left unfinished."""

    in_hand: int = 0  # work in hand when the stop began
    unfinished: int = 0  # still unfinished at the bound, given back
    unit: str = "jobs"
    fate: str = "they will be redelivered"  # what becomes of the unfinished work

    def line(self) -> str:
        """The one line a service logs when it has stopped."""
        if not self.unfinished:
            return (
                f"stopped: 0 {self.unit} unfinished ({self.in_hand} in hand at the stop, finished)"
            )
        return (
            f"stopped with {self.unfinished} {self.unit} unfinished "
            f"({self.in_hand} in hand at the stop); {self.fate}"
        )

    def fields(self) -> dict[str, Any]:
        return {"in_hand": self.in_hand, "unfinished": self.unfinished, "unit": self.unit}

    def log(self, logger: logging.Logger | None = None) -> None:
        (logger or log).info(self.line(), extra=self.fields())


async def bounded(aw: Awaitable[object], what: str, timeout: float = 5.0) -> bool:
    """Await `aw` for at most `timeout` seconds: closing channels and connections at the end
    of a stop, when a broker that does not answer must not hold the process. False (logged)
    when cut short; errors are logged too, never raised."""
    try:
        async with asyncio.timeout(timeout):
            await aw
    except TimeoutError:
        log.warning("%s: no answer within %gs; going on", what, timeout)
        return False
    except Exception as exc:
        log.debug("%s: %r", what, exc)
    return True


ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[ShutdownReport | None]]


def tune_gc() -> None:
    """Call once start-up is done. Everything built so far (modules, the app, pools) lives as
    long as the process: freezing it keeps it out of the cyclic GC's full passes, which
    otherwise walk the whole heap every few thousand messages (it raised the inbound
    projection's rate and cut the API's p99 markedly in the benchmarks). A higher young
    threshold makes the young passes fewer; messages are short-lived and mostly acyclic."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


async def stop_tasks(
    tasks: Iterable[asyncio.Task[None] | None], *, patience: float = 10.0, every: float = 0.5
) -> bool:
    """Cancel `tasks` and wait for them to end, cancelling again every `every` seconds.

    On Python 3.11 `asyncio.wait_for` (used inside aiormq and aio-pika) returns the inner
    result when a cancel arrives just as that result does, so the cancel is lost; a loop
    that catches `Exception` and carries on then never ends, and a shutdown awaiting it
    hangs (a test's teardown did, for two minutes, while the outbox relay kept retrying).
    True when all ended; False (logged, naming them) if some still ran after `patience`.
    """
    given = {t for t in tasks if t is not None}
    ended = {t for t in given if t.done()}
    pending = given - ended
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            names = ", ".join(sorted(t.get_name() for t in pending))
            log.error("tasks did not stop within %.1fs: %s", patience, names)
            return False
        for t in pending:
            t.cancel()
        done, pending = await asyncio.wait(pending, timeout=min(every, left))
        ended |= done
    for t in ended:
        if not t.cancelled() and t.exception() is not None:
            log.warning("task %s ended with %r", t.get_name(), t.exception())
    return True


def run_service(name: str, settings: Settings, main: ServiceMain, *, uvloop: bool = False) -> None:
    """Run `main(settings, stop_event)` until SIGINT/SIGTERM sets the event.

    `main` must stop taking work once `stop_event` is set, finish what it has in hand
    within `settings.shutdown_timeout`, and return a `ShutdownReport` (logged as the last
    line). A stop that takes `SHUTDOWN_SLACK` seconds longer than that ends the process
    with exit code 1; otherwise it exits 0.
    """
    setup_logging(name, settings.log_level, settings.log_format)

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if not stop.is_set():
                log.info(
                    "%s: stopping; finishing the work in hand (up to %gs)",
                    sig.name,
                    settings.shutdown_timeout,
                )
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        log.info("starting", extra={"namespace": settings.namespace})
        tune_gc()
        task: asyncio.Future[ShutdownReport | None] = asyncio.ensure_future(main(settings, stop))
        stopping = asyncio.create_task(stop.wait(), name="stop-signal")
        either: list[asyncio.Future[Any]] = [task, stopping]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not task.done():
            done, _ = await asyncio.wait([task], timeout=settings.shutdown_timeout + SHUTDOWN_SLACK)
            if not done:
                log.error(
                    "did not stop within %gs; exiting with the work in hand unfinished "
                    "(RabbitMQ redelivers what was not acknowledged)",
                    settings.shutdown_timeout + SHUTDOWN_SLACK,
                )
                logging.shutdown()
                os._exit(1)
        report = task.result()
        if report is None:
            log.info("stopped")
        else:
            report.log()

    # uvloop where it is asked for (the smpp-worker and inbound, whose hot paths are many
    # small socket writes to RabbitMQ, PostgreSQL and the SMSC); asyncio's own loop
    # elsewhere: uvloop breaks pyserial-asyncio's transport and the simulators' servers.
    factory = _uvloop_factory() if uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_run())


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on this platform (Windows): asyncio's own loop
        return None
    return uvloop.new_event_loop
