"""SMSC simulator: SMPP 3.4 server plus an HTTP control interface (`smsgw sim smsc`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from smsgw_shared.config import Settings
from smsgw_smpp.sim.control import build_app
from smsgw_smpp.sim.server import SmscServer
from smsgw_smpp.sim.state import SimConfig

log = logging.getLogger(__name__)

__all__ = ["RunningSimulator", "SimConfig", "SmscServer", "run_simulator", "start_simulator"]


@dataclass
class RunningSimulator:
    """A started simulator: its server object, ports, and how to stop it."""

    server: SmscServer
    port: int
    control_port: int
    runner: web.AppRunner

    async def stop(self) -> None:
        """Stop the control interface and the SMPP server."""
        await self.runner.cleanup()
        await self.server.stop()


def config_from_settings(settings: Settings) -> SimConfig:
    """The simulator's starting behaviour from `[simulators]`."""
    sim = settings.simulators
    return SimConfig(
        system_id=sim.smsc_system_id,
        password=sim.smsc_password,
        dlr_delay=sim.dlr_delay,
        id_format=sim.smsc_id_format,
    )


async def start_simulator(
    config: SimConfig, host: str = "127.0.0.1", port: int = 2775, control_port: int = 2780
) -> RunningSimulator:
    """Start the SMPP listener and the HTTP control interface (ports 0 pick free ones)."""
    server = SmscServer(config)
    bound_port = await server.start(host, port)
    runner = web.AppRunner(build_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, control_port)
    await site.start()
    server_obj: Any = site._server
    sockets = getattr(server_obj, "sockets", None) or []
    bound_control = int(sockets[0].getsockname()[1]) if sockets else control_port
    log.info(
        "SMSC simulator on %s:%d, control on http://%s:%d", host, bound_port, host, bound_control
    )
    return RunningSimulator(server, bound_port, bound_control, runner)


async def run_simulator(
    settings: Settings, stop: asyncio.Event, host: str, port: int, control_port: int
) -> None:
    """Run the SMSC simulator until `stop` is set."""
    sim = await start_simulator(config_from_settings(settings), host, port, control_port)
    try:
        await stop.wait()
    finally:
        await sim.stop()
