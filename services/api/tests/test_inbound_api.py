"""`/v1/inbound`: received SMS stored by the inbound service, listed and read."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from smsgw_api.deps import AppState
from smsgw_inbound.received import Receiver
from smsgw_shared.messages import InboundPart


async def test_list_filter_paginate_get(
    api: httpx.AsyncClient, admin_headers: dict[str, str], make_key: Any, app_state: AppState
) -> None:
    sender = "+7999" + uuid.uuid4().hex[:7]
    receiver = Receiver(app_state.engine, 3600)
    for i in range(3):
        part = InboundPart(route="modem:m1", sender=sender, recipient="+79001112233", text=f"t{i}")
        assert await receiver.store(part) == "stored"
    await receiver.store(InboundPart(route="smpp:b1", sender=sender, text="other route"))
    _, reader = await make_key(scopes=["read"])
    q = {"sender": sender, "route": "modem:m1"}
    r = await api.get("/v1/inbound", params=q | {"limit": 2}, headers=reader)
    assert r.status_code == 200, r.text
    page = r.json()
    assert [m["text"] for m in page["data"]] == ["t2", "t1"] and page["next_cursor"]
    r = await api.get("/v1/inbound", params=q | {"cursor": page["next_cursor"]}, headers=reader)
    assert [m["text"] for m in r.json()["data"]] == ["t0"] and r.json()["next_cursor"] is None
    first = page["data"][0]
    assert first["from"] == sender and first["to"] == "+79001112233" and first["complete"] is True
    r = await api.get(f"/v1/inbound/{first['id']}", headers=reader)
    assert r.status_code == 200 and r.json()["text"] == "t2"
    assert (await api.get(f"/v1/inbound/{uuid.uuid4()}", headers=reader)).status_code == 404
    assert (await api.get("/v1/inbound/nope", headers=reader)).status_code == 404
    q = {"sender": sender, "recipient": "+79001112233"}
    r = await api.get("/v1/inbound", params=q, headers=admin_headers)
    assert len(r.json()["data"]) == 3
    _, sender_only = await make_key(scopes=["send"])
    assert (await api.get("/v1/inbound", headers=sender_only)).status_code == 403
