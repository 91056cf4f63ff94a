"""Faults: hang and reset, device gone and back, garbage, URC noise, login, heartbeats."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from smsgw_modem.sim import LoginSpec, Simulator
from smsgw_shared.config import ModemConfig, ScriptStep
from smsgw_shared.messages import SendJob
from smsgw_shared.testing import free_port, wait_for


def job(message_id: str, text: str = "fault test", route: str = "modem:m1") -> SendJob:
    return SendJob(message_id=message_id, to="+79160001234", text=text, route=route, dlr=False)


def metric(name: str, modem: str) -> float:
    return REGISTRY.get_sample_value(name, {"modem": modem}) or 0.0


async def test_hang_is_reset_and_job_retried(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    resets = metric("smsgw_modem_resets_total", "m1")
    faults = sim.device(1).state.faults
    faults.hang, faults.hang_until_reconnect = True, True
    await worker.send(job("h1"))
    await events.wait_status("h1", "sent", timeout=30)
    assert len(sim.device(1).state.sent) == 1
    assert metric("smsgw_modem_resets_total", "m1") == resets + 1
    beats = events.heartbeats("modem:m1")
    assert any(not b.connected for b in beats)
    assert any("no answer" in str(b.details.get("last_error")) for b in beats)


async def test_device_gone_and_back_over_pty(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1, pty=True)))
    await events.wait_connected("modem:m1")
    link = sim.servers[0].pty_link
    assert link is not None
    sim.device(1).set_gone(True)
    assert not Path(link).exists()

    async def disconnected() -> bool:
        return any(not b.connected for b in events.heartbeats("modem:m1"))

    await wait_for(disconnected, 10)
    await worker.send(job("g1"))  # waits in the modem's own queue
    await asyncio.sleep(1.0)
    assert not events.status("g1", "sent")
    sim.device(1).set_gone(False)
    await events.wait_status("g1", "sent", timeout=20)
    assert len(sim.device(1).state.sent) == 1


async def test_tcp_port_refused_then_back(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    sim.device(1).set_gone(True, duration=1.5)  # unplugged before the worker starts
    await worker.start(setup_modems(mk_modem(1)))
    await worker.send(job("g2"))
    await events.wait_status("g2", "sent", timeout=20)
    beats = events.heartbeats("modem:m1")
    assert beats[0].connected is False and beats[0].state in ("connecting", "disconnected")
    await events.wait_connected("modem:m1")  # heartbeats are periodic: the next one says so


async def test_garbage_from_the_port_is_skipped(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    device = sim.device(1)
    device.write_garbage(64)
    device.state.faults.garbage_responses = 3
    await worker.send(job("j1", text="after the junk"))
    await events.wait_status("j1", "sent")
    assert device.state.sent[0].text == "after the junk"
    assert device.state.faults.garbage_responses < 3

    async def counted() -> bool:
        return metric("smsgw_modem_garbage_lines_total", "m1") > 0

    await wait_for(counted, 5)


async def test_urc_noise_in_the_middle_of_a_send(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    device = sim.device(1)
    device.state.faults.send_latency = 0.15
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    device.state.noise_interval = 0.02
    device.start_noise()
    sender = asyncio.create_task(worker.send(job("n1", text="noise " * 60)))
    for _ in range(10):
        await asyncio.sleep(0.05)
        device.urc('+CMTI: "SM",49')  # an empty slot: the worker reads it and moves on
        device.urc("^RSSI: 9")
    await sender
    await events.wait_status("n1", "sent", timeout=20)
    assert "".join(p.text or "" for p in device.state.sent) == "noise " * 60
    device.state.noise_interval = 0
    device.start_noise()


async def test_portech_login_script(
    worker: Any, events: Any, setup_modems: Any, tmp_path: Path
) -> None:
    control, port = free_port(), free_port()
    sim = Simulator(1, port, control, login=LoginSpec("voip", "1234", "module1"), pty_dir=tmp_path)
    await sim.start()
    try:
        config = ModemConfig(
            id="m1",
            url=f"socket://127.0.0.1:{port}",
            command_timeout=1.0,
            login_script=[
                ScriptStep(send="", expect="username:", raw=True),
                ScriptStep(send="voip", expect="password:"),
                ScriptStep(send="1234", expect="command:"),
                ScriptStep(send="module1", expect="got!!"),
            ],
        )
        await worker.start(setup_modems(config))
        await worker.send(job("l1"))
        await events.wait_status("l1", "sent")
        assert len(sim.device(1).state.sent) == 1
    finally:
        await worker.stop()
        await sim.stop()


async def test_heartbeat_details(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    sim.device(1).state.rssi = 25
    await worker.start(setup_modems(mk_modem(1)))
    beat = await events.wait_connected("modem:m1")
    assert beat.kind == "modem" and beat.state == "connected"
    assert beat.signal_dbm == -63 and beat.operator == "SimNet"
    assert beat.details["imei"] == sim.device(1).state.imei
    assert beat.details["imsi"] == sim.device(1).state.imsi
    assert beat.details["iccid"] == sim.device(1).state.iccid
    assert beat.details["model"] == "E3131" and beat.details["registration"] == "home"
    assert beat.queue_depth == 0
    assert metric("smsgw_modem_connected", "m1") == 1


async def test_one_hung_modem_does_not_stall_another(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1), mk_modem(2, command_timeout=5.0)))
    await events.wait_connected("modem:m2")
    sim.device(2).state.faults.hang = True  # hangs for good (no reconnect cure)
    await worker.send(job("i2", route="modem:m2"))
    await events.wait_status("i2", "sending")  # m2 has it in hand, hung on it
    await worker.send(job("i1"))
    await events.wait_status("i1", "sent", timeout=5)
    sim.device(2).state.faults.hang = False
