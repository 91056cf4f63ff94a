"""The modem simulator: Huawei-class AT command set on TCP and a pty, HTTP control."""

from __future__ import annotations

import asyncio
from pathlib import Path

from smsgw_modem.sim.runner import Simulator
from smsgw_modem.sim.session import LoginSpec
from smsgw_shared.config import Settings

__all__ = ["LoginSpec", "Simulator", "run_simulator"]


async def run_simulator(
    settings: Settings,
    stop: asyncio.Event,
    count: int,
    base_port: int,
    control_port: int,
    send_latency: float = 0.0,
    *,
    noise_interval: float | None = None,
    pty_dir: str | None = None,
    login: LoginSpec | None = None,
) -> None:
    """Run `count` simulated modems on `base_port+i` (and ptys) until `stop` is set."""
    sims = settings.simulators
    sim = Simulator(
        count,
        base_port,
        control_port,
        send_latency=send_latency,
        dlr_delay=sims.dlr_delay,
        noise_interval=sims.modem_noise_interval if noise_interval is None else noise_interval,
        pty_dir=Path(pty_dir) if pty_dir else None,
        login=login,
        host=sims.modem_host,
    )
    await sim.start()
    for server in sim.servers:
        print(
            f"modem {server.device.state.n}: socket://{server.host}:{server.port} "
            f"pty {server.pty_path} (link {server.pty_link})",
            flush=True,
        )
    try:
        await stop.wait()
    finally:
        await sim.stop()
