"""End to end: incoming SMS whose content PostgreSQL would refuse as sent, from the SMSC
simulator and the modem simulator, reach `/v1/inbound` and the webhook all the same.

Kinds: an encoding named with nine characters (ISO-8859-5), NUL in UCS-2 text (U+FFFD in
`text`, the original in `raw_hex`), an emoji cut between two UCS-2 parts (whole again once
assembled), numbers over the old 32-character columns (kept in full), absurd concatenation
info (a single message). One stack per simulator; each kind is checked on its own message.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from smsgw_shared.sms.pdu_fields import encode_address, encode_timestamp
from smsgw_shared.testing import free_port, wait_for
from smsgw_smpp import pdu as sp
from tests.e2e.stack import Stack

TIMEOUT = 30.0
READY_TIMEOUT = 120.0  # the host's 2 cores are shared: a cold start can take a while


@pytest.fixture
async def stack(
    tmp_path: Path, database_url: str, broker_url: str, amqp: Any
) -> AsyncIterator[Stack]:
    """`tests/conftest.py`'s stack, with more patience while the services start."""
    s = Stack.in_test(tmp_path, amqp, database_url, broker_url)
    s.write_config()
    for name, argv in (
        ("sim-smsc", ("sim", "smsc")),
        ("sim-modem", ("sim", "modem")),
        ("inbound", ("inbound",)),
        ("modem-worker", ("modem-worker",)),
        ("smpp-worker", ("smpp-worker",)),
        ("api", ("api",)),
    ):
        s.start(name, *argv)
    try:
        await s.wait_http(s.api_url + "/readyz", READY_TIMEOUT)
        for port in ("inbound", "modem_metrics", "smpp_metrics"):
            await s.wait_http(f"http://127.0.0.1:{s.ports[port]}/healthz", READY_TIMEOUT)
        yield s
    finally:
        s.stop_all()


@dataclass
class Hooks:
    """A local webhook endpoint recording the `data` of each `message.received`."""

    port: int = field(default_factory=free_port)
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if body.get("type") == "message.received":
            self.received.append(body["data"])
        return web.Response(text="ok")

    def from_(self, sender: str) -> dict[str, Any] | None:
        return next((d for d in self.received if d["from"] == sender), None)


@contextlib.asynccontextmanager
async def hooks_for(client: httpx.AsyncClient) -> AsyncIterator[Hooks]:
    """Run the endpoint and subscribe it to `message.received`."""
    hooks = Hooks()
    app = web.Application()
    app.router.add_post("/hook", hooks.handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hooks.port).start()
    try:
        r = await client.post(
            "/v1/webhooks",
            json={"url": f"http://127.0.0.1:{hooks.port}/hook", "events": ["message.received"]},
        )
        assert r.status_code == 201, r.text
        yield hooks
    finally:
        await runner.cleanup()


async def connected(client: httpx.AsyncClient) -> None:
    async def probe() -> bool:
        body = (await client.get("/v1/routes")).json()
        return all(x["connected"] for x in body["modems"] + body["binds"])

    await wait_for(probe, TIMEOUT, 0.2)


async def stored(client: httpx.AsyncClient, hooks: Hooks, sender: str) -> dict[str, Any]:
    """The one message from `sender`, as `GET /v1/inbound/{id}` shows it, once its webhook
    has arrived too (checked to carry the same fields)."""

    async def listed() -> list[dict[str, Any]]:
        r = await client.get("/v1/inbound", params={"sender": sender})
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    [msg] = await wait_for(listed, TIMEOUT, 0.2)
    r = await client.get(f"/v1/inbound/{msg['id']}")
    assert r.status_code == 200, r.text
    one = dict(r.json())

    async def hooked() -> dict[str, Any] | None:
        return hooks.from_(sender)

    hook = await wait_for(hooked, TIMEOUT, 0.2)
    for name in ("id", "from", "to", "text", "complete", "parts"):
        assert hook[name] == one[name], name
    assert hook.get("raw_hex") == one.get("raw_hex")
    return one


def number() -> str:
    return "7999" + "".join(random.choice("0123456789") for _ in range(7))


# -- the SMSC simulator ------------------------------------------------------------------


def deliver_sm(sender: str, data_coding: int, short_message: bytes, esm_class: int = 0) -> str:
    """A whole deliver_sm PDU in hex (for the simulator's raw injection)."""
    fields: dict[str, sp.FieldValue | str] = {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "source_addr": sender,
        "destination_addr": "1234",
        "esm_class": esm_class,
        "data_coding": data_coding,
        "short_message": short_message,
    }
    return sp.encode(sp.DELIVER_SM, random.randrange(1 << 20, 1 << 30), fields).hex()


async def test_hostile_mo_from_the_smsc(stack: Stack, client: httpx.AsyncClient) -> None:
    nul, long_from, long_to = number(), number(), "".join(random.choices("0123456789", k=3000))
    long_from += "".join(random.choices("0123456789", k=3000 - len(long_from)))
    # SAR TLVs a receiver cannot honour (SMPP 3.4 §5.3.2.22-24 give them 2, 1 and 1 octets).
    absurd_sar = {
        "total-0": {"020c": "0001", "020e": "00", "020f": "01"},
        "seq-over-total": {"020c": "0001", "020e": "03", "020f": "05"},
        "total-255-seq-0": {"020c": "0001", "020e": "ff", "020f": "00"},
        "total-over-an-octet": {"020c": "0001", "020e": "9c40", "020f": "0001"},
        "ref-over-16-bits": {"020c": "0102030405060708", "020e": "02", "020f": "01"},
    }
    absurd = {kind: number() for kind in absurd_sar}
    # A sender that cut 😀 (D83D DE00) between the two parts of a long message.
    emoji = number()
    cut = [
        bytes.fromhex("0500030b0201") + "hi".encode("utf-16-be") + bytes.fromhex("d83d"),
        bytes.fromhex("0500030b0202de00") + "!".encode("utf-16-be"),
    ]
    cyrillic = number()  # data_coding 6: ISO-8859-5, an encoding name of nine characters
    await connected(client)
    async with hooks_for(client) as hooks, httpx.AsyncClient(base_url=stack.smsc_control) as smsc:
        r = await smsc.post(
            "/inject_raw", json={"hex": deliver_sm(cyrillic, 6, "Привет".encode("iso8859-5"))}
        )
        assert r.status_code == 200, r.text
        r = await smsc.post(
            "/inject_raw", json={"hex": deliver_sm(nul, 8, "a\x00b\x00".encode("utf-16-be"))}
        )
        assert r.status_code == 200, r.text
        for part in cut:
            r = await smsc.post("/inject_raw", json={"hex": deliver_sm(emoji, 8, part, 0x40)})
            assert r.status_code == 200, r.text
        r = await smsc.post("/inject", json={"from": long_from, "to": long_to, "text": "long"})
        assert r.json()["statuses"] == ["ESME_ROK"], r.text
        for kind, tlvs in absurd_sar.items():
            r = await smsc.post("/inject", json={"from": absurd[kind], "text": kind, "tlvs": tlvs})
            assert r.json()["statuses"] == ["ESME_ROK"], r.text

        msg = await stored(client, hooks, "+" + nul)
        assert msg["text"] == "a\ufffdb\ufffd" and msg["encoding"] == "ucs2"
        assert msg["raw_hex"] == "0061000000620000"

        msg = await stored(client, hooks, "+" + cyrillic)
        assert msg["text"] == "Привет" and msg["encoding"] == "iso8859-5"

        msg = await stored(client, hooks, "+" + emoji)
        assert msg["text"] == "hi\U0001f600!" and msg["parts"] == 2 and msg["complete"]
        assert "raw_hex" not in msg

        msg = await stored(client, hooks, "+" + long_from)
        assert msg["from"] == "+" + long_from and msg["to"] == long_to
        assert msg["text"] == "long" and "raw_hex" not in msg

        for kind, sender in absurd.items():
            msg = await stored(client, hooks, "+" + sender)
            assert msg["text"] == kind, kind
            assert msg["complete"] and msg["parts"] == 1 and msg["parts_received"] == 1, kind


# -- the modem simulator -----------------------------------------------------------------


def sms_deliver(sender: str, ucs2_text: str, udh: bytes = b"") -> tuple[str, int]:
    """An SMS-DELIVER PDU (TS 23.040 §9.2.2.1) in UCS-2 with an optional UDH, as the network
    sends it: (hex with an empty SMSC field, TPDU length)."""
    ud = udh + ucs2_text.encode("utf-16-be")
    first = 0x04 | (0x40 if udh else 0)  # SMS-DELIVER, no more messages, UDHI
    tpdu = bytes((first,)) + encode_address(sender) + bytes((0x00, 0x08))
    tpdu += encode_timestamp(datetime.now(UTC).replace(microsecond=0))
    tpdu += bytes((len(ud),)) + ud
    return "00" + tpdu.hex().upper(), len(tpdu)


async def test_hostile_mo_from_the_modem(stack: Stack, client: httpx.AsyncClient) -> None:
    nul = "+" + number()
    # 8-bit concatenation elements (TS 23.040 §9.2.3.24.1) no receiver can honour.
    absurd_udh = {
        "total-0": bytes.fromhex("050003070001"),
        "seq-over-total": bytes.fromhex("050003070305"),
        "total-255-seq-0": bytes.fromhex("050003" + "07ff00"),
    }
    absurd = {kind: "+" + number() for kind in absurd_udh}
    await connected(client)
    async with hooks_for(client) as hooks, httpx.AsyncClient(base_url=stack.modem_control) as sim:

        async def arrive(pdu: tuple[str, int]) -> None:
            # Routed straight to the worker (+CMT, TS 27.005 §3.4.1), as with +CNMI mt=2.
            r = await sim.post("/modems/1/urc", json={"line": f"+CMT: ,{pdu[1]}", "pdu": pdu[0]})
            assert r.status_code == 200, r.text

        await arrive(sms_deliver(nul, "zero\x00here"))
        for kind, udh in absurd_udh.items():
            await arrive(sms_deliver(absurd[kind], kind, udh))

        msg = await stored(client, hooks, nul)
        assert msg["text"] == "zero\ufffdhere" and msg["encoding"] == "ucs2"
        assert msg["raw_hex"] == "zero\x00here".encode("utf-16-be").hex()

        for kind, sender in absurd.items():
            msg = await stored(client, hooks, sender)
            assert msg["text"] == kind, kind
            assert msg["complete"] and msg["parts"] == 1 and msg["parts_received"] == 1, kind
