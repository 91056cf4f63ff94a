"""End to end: REST → store → RabbitMQ → worker → simulator → delivery report → inbound →
store, with every service a separate process started by the `smsgw` command line."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx

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
    # Each part's receipt keeps its own time (its minute-resolution done date) in the history,
    # which stays in the order things happened: never before the submission.
    history = msg["history"]
    times = [datetime.fromisoformat(h["at"]) for h in history]
    assert times == sorted(times)
    receipts = [h for h in history if h["state"] == "delivered" and h["source"] == "smpp:b1"]
    assert sorted(h["part"] for h in receipts) == list(range(1, m["parts"] + 1))
    for h in receipts:
        reported, at = datetime.fromisoformat(h["reported_at"]), datetime.fromisoformat(h["at"])
        assert (reported.second, reported.microsecond) == (0, 0)
        assert reported <= at
    assert history[0]["reported_at"] is None  # the API's `queued`: no report
    assert datetime.fromisoformat(msg["done_at"]) >= datetime.fromisoformat(msg["sent_at"])


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


async def test_balance_and_ussd_through_the_modem_worker(stack, client):
    r = await client.get("/v1/modems/m1/balance")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] and body["text"]
    r = await client.post("/v1/modems/m2/ussd", json={"code": "*100#"})
    assert r.status_code == 200 and r.json()["text"]


async def test_incoming_sms_reaches_the_api(stack, client):
    # A sender of its own: the session's database holds other tests' incoming SMS.
    sender = f"+7921{uuid.uuid4().int % 10**7:07d}"
    async with httpx.AsyncClient(base_url=stack.modem_control) as c:
        r = await c.post("/modems/1/inject", json={"from": sender, "text": "Привет " * 30})
        assert r.status_code in (200, 201), r.text
    for _ in range(100):
        r = await client.get("/v1/inbound", params={"sender": sender})
        if r.status_code == 200 and r.json()["data"]:
            break
        await asyncio.sleep(0.2)
    [msg] = r.json()["data"]
    assert msg["text"] == "Привет " * 30 and msg["complete"]
