"""Process plumbing shared by every service: signals, logging, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable

from smsgw_shared.config import Settings
from smsgw_shared.observability.logging import setup_logging

log = logging.getLogger(__name__)

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]


def tune_gc() -> None:
    """Call once start-up is done. Everything built so far (modules, the app, pools) lives as
    long as the process: freezing it keeps it out of the cyclic GC's full passes, which
    otherwise walk the whole heap every few thousand messages (measured: the inbound
    projection went from 2.7k to 4.5k events/s; API p99 from 147 to 57 ms). A higher young
    threshold makes the young passes fewer; messages are short-lived and mostly acyclic."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def run_service(name: str, settings: Settings, main: ServiceMain) -> None:
    """Run `main(settings, stop_event)` until SIGINT/SIGTERM sets the event.

    `main` must return once `stop_event` is set, after finishing in-flight work.
    """
    setup_logging(name, settings.log_level, settings.log_format)

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        log.info("starting", extra={"namespace": settings.namespace})
        tune_gc()
        await main(settings, stop)
        log.info("stopped")

    # asyncio's own loop: uvloop (about 5 % less CPU in the inbound service) breaks
    # pyserial-asyncio's transport and the simulators' servers.
    asyncio.run(_run())
