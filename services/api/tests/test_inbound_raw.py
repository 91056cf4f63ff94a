"""`/v1/inbound`: a received SMS whose text had characters replaced shows its `raw_hex`;
one without does not, and a number of any length is found by `sender`."""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx

from smsgw_api.deps import AppState
from smsgw_inbound.received import Receiver
from smsgw_shared.messages import InboundPart


async def test_raw_hex_only_when_set_and_long_senders(
    api: httpx.AsyncClient, make_key: Any, app_state: AppState
) -> None:
    sender = "+7999" + uuid.uuid4().hex[:7]
    long_sender = "+" + "".join(random.choices("0123456789", k=3000))
    receiver = Receiver(app_state.engine, 3600)
    nul = InboundPart(route="smpp:b1", sender=sender, text="a\x00", encoding="ucs2")
    assert await receiver.store(nul) == "stored"
    assert await receiver.store(InboundPart(route="smpp:b1", sender=sender, text="ok")) == "stored"
    assert await receiver.store(InboundPart(route="smpp:b1", sender=long_sender, text="x"))
    _, reader = await make_key(scopes=["read"])
    r = await api.get("/v1/inbound", params={"sender": sender}, headers=reader)
    assert r.status_code == 200, r.text
    by_text = {m["text"]: m for m in r.json()["data"]}
    assert by_text["a\ufffd"]["raw_hex"] == "00610000" and "raw_hex" not in by_text["ok"]
    replaced = by_text["a\ufffd"]["id"]
    r = await api.get(f"/v1/inbound/{replaced}", headers=reader)
    assert r.status_code == 200 and r.json()["raw_hex"] == "00610000"
    r = await api.get("/v1/inbound", params={"sender": long_sender}, headers=reader)
    assert [m["from"] for m in r.json()["data"]] == [long_sender]
