"""Receiving through the simulator: single and multipart SMS, the sweep, stored reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smsgw_modem.sim import Simulator
from smsgw_shared.messages import SendJob
from smsgw_shared.testing import wait_for


async def _storage_empty(sim: Simulator, n: int) -> None:
    async def probe() -> bool:
        return not sim.device(n).state.storage

    await wait_for(probe, 10)


async def test_single_sms_published_then_deleted(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    sim.device(1).inject("+79161112233", "Привет!")
    part = (await events.wait_inbound(1))[0]
    assert (part.route, part.sender, part.text, part.encoding) == (
        "modem:m1",
        "+79161112233",
        "Привет!",
        "ucs2",
    )
    assert part.concat is None and part.smsc_timestamp is not None
    await _storage_empty(sim, 1)


async def test_multipart_sms_published_as_parts(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    await worker.start(setup_modems(mk_modem(1, pty=True)))
    await events.wait_connected("modem:m1")
    text = "Long message with [brackets] and € signs. " * 6
    sim.device(1).inject("SHOP", text)
    parts = await events.wait_inbound(2)
    assert all(p.concat is not None for p in parts)
    concat = [p.concat for p in parts if p.concat]
    assert {c.total for c in concat} == {2} and sorted(c.seq for c in concat) == [1, 2]
    assert len({c.ref for c in concat}) == 1
    ordered = sorted(parts, key=lambda p: p.concat.seq if p.concat else 0)
    assert "".join(p.text for p in ordered) == text
    assert parts[0].sender == "SHOP"
    await _storage_empty(sim, 1)


async def test_sweep_at_start_collects_stored_messages(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    sim.device(1).inject("+79160000001", "arrived while the worker was down")
    sim.device(1).inject("+79160000002", "and another one")
    assert len(sim.device(1).state.storage) == 2
    await worker.start(setup_modems(mk_modem(1)))
    parts = await events.wait_inbound(2)
    assert {p.sender for p in parts} == {"+79160000001", "+79160000002"}
    await _storage_empty(sim, 1)


async def test_stored_status_report_via_cdsi(
    sim: Simulator, worker: Any, events: Any, mk_modem: Callable[..., Any], setup_modems: Any
) -> None:
    # ds=2: reports are stored and indicated with +CDSI, then read with AT+CMGR
    config = mk_modem(1, init_commands=["AT+CNMI=2,1,0,2,0"])
    await worker.start(setup_modems(config))
    await worker.send(
        SendJob(message_id="s1", to="+79160001234", text="report me", route="modem:m1")
    )
    sent = (await events.wait_status("s1", "sent"))[0]
    report = (await events.wait_status(None, "delivered"))[0]
    assert report.provider_id == sent.parts[0].provider_id
    assert any('+CDSI: "SM"' in c or c.startswith("AT+CMGR") for c in sim.device(1).command_log)
    await _storage_empty(sim, 1)
