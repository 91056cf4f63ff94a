"""End to end: REST → store → RabbitMQ → worker → simulator → delivery report → inbound →
store, with every service a separate process started by the `smsgw` command line."""

from __future__ import annotations

import asyncio

from tests.conftest import wait_status


async def test_modem_send_is_delivered(stack, client):
    r = await client.post("/v1/messages", json={"to": "+79210001234", "text": "Hello modem"})
    assert r.status_code == 202, r.text
    mid = r.json()["messages"][0]["id"]
    msg = await wait_status(client, mid, {"delivered"})
    assert msg["route"] == "modem:*"
    states = [h["state"] for h in msg["history"]]
    assert states[0] == "queued" and "sent" in states and states[-1] == "delivered"
    assert msg["parts_detail"][0]["route"].startswith("modem:m")
    assert msg["parts_detail"][0]["provider_id"] is not None


async def test_smpp_long_ucs2_send_is_delivered(stack, client):
    text = "Привет! Это длинное сообщение 😀 " * 5
    r = await client.post("/v1/messages", json={"to": "+79160001234", "text": text})
    assert r.status_code == 202, r.text
    m = r.json()["messages"][0]
    assert m["route"] == "smpp:b1" and m["encoding"] == "ucs2" and m["parts"] > 1
    msg = await wait_status(client, m["id"], {"delivered"})
    assert len(msg["parts_detail"]) == m["parts"]
    assert all(p["status"] == "delivered" and p["provider_id"] for p in msg["parts_detail"])


async def test_many_messages_none_lost(stack, client):
    to = [f"+7921000{i:04d}" for i in range(40)] + [f"+7916000{i:04d}" for i in range(40)]
    r = await client.post("/v1/messages", json={"to": to, "text": "batch"})
    assert r.status_code == 202
    ids = [m["id"] for m in r.json()["messages"]]
    results = await asyncio.gather(
        *(wait_status(client, i, {"delivered"}, timeout=60) for i in ids)
    )
    assert len(results) == 80


async def test_routes_show_live_state(stack, client):
    async def all_connected() -> dict:
        r = await client.get("/v1/routes")
        body = r.json()
        routes = body["modems"] + body["binds"]
        return body if all(x["connected"] for x in routes) else {}

    for _ in range(100):
        body = await all_connected()
        if body:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError((await client.get("/v1/routes")).json())
    assert {m["id"] for m in body["modems"]} == {"m1", "m2"}
    assert body["modems"][0]["signal_dbm"] is not None
