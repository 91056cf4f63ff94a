"""The SMSC simulator at the protocol level: credentials, bind kinds, limits, control API."""

from __future__ import annotations

import asyncio

from smsgw_shared.config import SmppBindConfig
from smsgw_smpp import pdu as sp
from smsgw_smpp.bind import BindRefused, SmppBind
from smsgw_smpp.connection import SmppConnection

from .conftest import SimControl


async def _raw_session(port: int) -> SmppConnection:
    async def no_requests(pdu: sp.Pdu) -> int:
        return 0

    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: SmppConnection("t", no_requests), "127.0.0.1", port
    )
    return conn


async def test_credentials_and_bind_kinds(sim: SimControl) -> None:
    conn = await _raw_session(sim.sim.port)
    bad = await conn.request(sp.BIND_TRANSCEIVER, {"system_id": "smsgw", "password": "nope"})
    assert bad.status == 0x0E  # ESME_RINVPASWD
    early = await conn.request(sp.SUBMIT_SM, {"short_message": b"x"})
    assert early.status == 0x04  # ESME_RINVBNDSTS: not bound yet
    ok = await conn.request(sp.BIND_RECEIVER, {"system_id": "smsgw", "password": "secret"})
    assert ok.status == 0 and ok.text("system_id") == "smsgw-sim"
    again = await conn.request(sp.BIND_TRANSMITTER, {"system_id": "smsgw", "password": "secret"})
    assert again.status == 0x05  # ESME_RALYBND
    receiver_submit = await conn.request(sp.SUBMIT_SM, {"short_message": b"x"})
    assert receiver_submit.status == 0x04
    assert (await conn.request(sp.ENQUIRE_LINK)).status == 0
    nack = await conn.request(0x00000077)
    assert nack.command_id == sp.GENERIC_NACK and nack.status == 0x03
    query = await conn.request(sp.QUERY_SM, {"message_id": "none"})
    assert query.status == 0x67  # ESME_RQUERYFAIL
    unbind = await conn.request(sp.UNBIND)
    assert unbind.command_id == sp.UNBIND | sp.RESP
    await asyncio.wait_for(conn.closed, 2)


async def test_refused_bind_raises(sim: SimControl) -> None:
    async def nothing(pdu: sp.Pdu) -> int:
        return 0

    bind = SmppBind(SmppBindConfig(id="x", port=sim.sim.port, system_id="who"), nothing)
    try:
        await bind._open("transceiver")
    except BindRefused as exc:
        assert exc.status == 0x0F  # ESME_RINVSYSID
    else:
        raise AssertionError("bind should be refused")


async def test_tps_errors_and_ids(sim: SimControl) -> None:
    async def nothing(pdu: sp.Pdu) -> int:
        return 0

    bind = SmppBind(SmppBindConfig(id="x", port=sim.sim.port), nothing)
    bind.start()
    assert await bind.wait_bound(5)
    try:
        await sim.config(tps=5, id_format="decimal")
        conn = bind.sessions["transceiver"]
        assert conn is not None  # straight on the session: no adaptive rate in between
        statuses = [
            (await conn.request(sp.SUBMIT_SM, {"short_message": b"t"})).status for _ in range(20)
        ]
        assert 0x58 in statuses and statuses[0] == 0  # ESME_RTHROTTLED past the burst
        await sim.config(tps=0, errors=[["ESME_RINVSRCADR", 2], ["0x45", 1]])
        statuses = [(await bind.submit({"short_message": b"e"})).status for _ in range(4)]
        assert statuses == [0x0A, 0x0A, 0x45, 0]
        ids = {(await bind.submit({"short_message": b"i"})).text("message_id") for _ in range(50)}
        assert len(ids) == 50 and all(i.isdigit() and len(i) == 10 for i in ids)
        stats = await sim.get("/stats")
        assert stats["throttled"] > 0 and stats["errors_injected"] == 3
        assert (await sim.get("/sent/count"))["pdus"] == stats["accepted"]
        raw = await sim.get("/sent?raw=1&since=1")
        assert len(raw) == stats["accepted"] - 1 and raw[0]["text"] in ("t", "e", "i")
    finally:
        await bind.stop(1)
