"""Running the modem simulator: N modems on TCP ports and ptys, and the control server."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from aiohttp import web

from smsgw_modem.sim.control import make_app
from smsgw_modem.sim.device import SimDevice
from smsgw_modem.sim.server import DeviceServer
from smsgw_modem.sim.session import LoginSpec
from smsgw_modem.sim.state import ModemState

log = logging.getLogger(__name__)


class Simulator:
    """`count` simulated modems plus their HTTP control server."""

    def __init__(
        self,
        count: int,
        base_port: int,
        control_port: int,
        *,
        host: str = "127.0.0.1",
        send_latency: float = 0.0,
        dlr_delay: float = 1.0,
        noise_interval: float = 0.0,
        pty_dir: Path | None = None,
        login: LoginSpec | None = None,
    ) -> None:
        self.control_port = control_port
        self.host = host
        pty_dir = pty_dir or Path(tempfile.gettempdir()) / f"smsgw-sim-{base_port}"
        self.servers: list[DeviceServer] = []
        for i in range(count):
            state = ModemState.create(i + 1)
            state.faults.send_latency = send_latency
            state.reports.delay = dlr_delay
            state.noise_interval = noise_interval
            device = SimDevice(state)
            self.servers.append(
                DeviceServer(
                    device, host, base_port + i, pty_link=pty_dir / f"modem{i + 1}", login=login
                )
            )
        self._runner: web.AppRunner | None = None

    def device(self, n: int) -> SimDevice:
        """The n-th modem (1-based)."""
        return self.servers[n - 1].device

    async def start(self) -> None:
        """Open every port and the control server."""
        for server in self.servers:
            await server.start()
            server.device.start_noise()
            log.info(
                "simulated modem %d on %s:%d, pty %s (link %s)",
                server.device.state.n,
                server.host,
                server.port,
                server.pty_path,
                server.pty_link,
            )
        self._runner = web.AppRunner(make_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.control_port)
        await site.start()
        log.info("modem simulator control on http://%s:%d/modems", self.host, self.control_port)

    async def stop(self) -> None:
        """Close everything."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for server in self.servers:
            await server.stop()
