"""Process plumbing shared by every service: signals, logging, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from smsgw_shared.config import Settings
from smsgw_shared.observability.logging import setup_logging

log = logging.getLogger(__name__)

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]


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
        await main(settings, stop)
        log.info("stopped")

    asyncio.run(_run())
