"""The seed-compatible APIs through the real pipeline: what each reports after a real send
and a real receipt (API → RabbitMQ → modem-worker / smpp-worker → simulators → delivery
report → inbound → store and event log → compat API). One gateway, started as processes by
the `smsgw` command line, serves the whole file.

The compat tests under services/api/tests/compat check formats and error codes cheaply, with
the workers and the projection faked; this file is where real outcomes are checked.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
import websockets

from smsgw_shared.amqp import AmqpConnection, Topology
from smsgw_shared.config import Settings
from smsgw_shared.testing.plugin import delete_namespace
from tests.conftest import wait_status
from tests.e2e.stack import Stack

T = TypeVar("T")

MODEM_NUMBER = "79203048606"  # routed to modem:* (the default route)
SMPP_NUMBER = "79160001234"  # +7916… is routed to smpp:b1


@dataclass(frozen=True)
class Gateway:
    """The running stack and one send+read key, presented the ways the seeds do."""

    stack: Stack
    name: str
    secret: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, broker_url: str
) -> Iterator[Gateway]:
    """The whole gateway as processes, shared by the tests of this file."""
    namespace = "t" + uuid.uuid4().hex[:10]
    stack = Stack(
        workdir=tmp_path_factory.mktemp("compat-pipeline"),
        namespace=namespace,
        database_url=database_url,
        amqp_url=broker_url,
        api_key="sgw_e2e_" + uuid.uuid4().hex,
    )
    stack.write_config()
    try:
        stack.start("sim-smsc", "sim", "smsc")
        stack.start("sim-modem", "sim", "modem")
        asyncio.run(stack.wait_http(stack.smsc_control + "/stats", timeout=120))
        asyncio.run(stack.wait_http(stack.modem_control + "/modems", timeout=120))
        stack.start("inbound", "inbound")
        stack.start("modem-worker", "modem-worker")
        stack.start("smpp-worker", "smpp-worker")
        stack.start("api", "api")
        asyncio.run(_ready(stack))
        name = "compat" + uuid.uuid4().hex[:8]
        r = httpx.post(
            stack.api_url + "/v1/keys",
            json={"name": name, "scopes": ["send", "read"]},
            headers={"Authorization": f"Bearer {stack.api_key}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        yield Gateway(stack, name, r.json()["secret"])
    finally:
        stack.stop_all()
        asyncio.run(_delete_namespace(namespace, broker_url))


async def _ready(stack: Stack) -> None:
    # Generous: on a loaded 2-core host importing a service alone can take 10 s.
    await stack.wait_http(stack.api_url + "/readyz", timeout=120)
    for port in ("inbound", "modem_metrics", "smpp_metrics"):
        await stack.wait_http(f"http://127.0.0.1:{stack.ports[port]}/healthz", timeout=120)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.api_key}"}
    ) as c:

        async def connected() -> bool:
            body = (await c.get("/v1/routes")).json()
            return all(x["connected"] for x in body["modems"] + body["binds"])

        await _until(connected, "every modem and bind connected")


async def _delete_namespace(namespace: str, broker_url: str) -> None:
    settings = Settings.model_validate({"namespace": namespace, "amqp_url": broker_url})
    conn = AmqpConnection(broker_url, Topology(namespace, [0.5, 1.0, 2.0]), name="pytest")
    await conn.connect()
    try:
        await delete_namespace(conn, settings)
    finally:
        await conn.close()


async def _until(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30) -> T:
    """Poll `check()` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last: {got!r})")
        await asyncio.sleep(0.2)


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the gateway's API, without credentials (each test presents its own)."""
    async with httpx.AsyncClient(base_url=gateway.stack.api_url, timeout=30) as c:
        yield c


@pytest.fixture
async def native(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """The native API with the same key, to look at what the compat API did."""
    async with httpx.AsyncClient(
        base_url=gateway.stack.api_url, headers=gateway.bearer, timeout=30
    ) as c:
        yield c


async def test_smstools_send_then_sent_spool(
    gateway: Gateway, api: httpx.AsyncClient, native: httpx.AsyncClient
) -> None:
    auth = httpx.BasicAuth(gateway.name, gateway.secret)
    r = await api.post(
        "/api/v1.0/sms/outgoing",
        json={"text": "smstools via smpp", "mobiles": [SMPP_NUMBER]},
        auth=auth,
    )
    assert r.status_code == 201, r.text
    mid = r.json()["message_id"][SMPP_NUMBER]

    async def in_sent_spool() -> dict[str, Any] | None:
        r = await api.get(f"/api/v1.0/sms/sent/{mid}", auth=auth)
        assert r.status_code in (200, 404), r.text
        return r.json() if r.status_code == 200 else None

    sent = await _until(in_sent_spool, "the message in the sent spool")
    assert sent["message_id"] == mid and sent["To"] == SMPP_NUMBER and sent["From"] == gateway.name
    assert sent["Sent"]
    msg = await wait_status(native, mid, {"delivered"})
    assert msg["parts_detail"][0]["provider_id"]  # the SMSC's id, from the real submit_sm_resp
    listing = (await api.get("/api/v1.0/sms/sent/", auth=auth)).json()
    assert mid in listing["message_id"]


async def test_smstele_send_then_status_reports_the_receipt(
    gateway: Gateway, api: httpx.AsyncClient
) -> None:
    auth = {"login": gateway.name, "psw": gateway.secret}
    ref = "tele-" + uuid.uuid4().hex[:12]
    r = await api.post(
        "/cgi-bin/sendsms",
        data=auth | {"phones": f"{SMPP_NUMBER},{MODEM_NUMBER}", "mes": "SMStele", "id": ref},
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == ref and r.json()["cnt"] == "2", r.json()

    async def both_delivered() -> list[dict[str, Any]] | None:
        r = await api.get("/cgi-bin/status", params=auth | {"id": ref})
        results = r.json().get("results", [])
        return results if [x["stat"] for x in results] == ["DELIVRD", "DELIVRD"] else None

    results = await _until(both_delivered, "both receipts in /cgi-bin/status")
    assert sorted(x["phone"] for x in results) == sorted([SMPP_NUMBER, MODEM_NUMBER])
    assert all(x["send_timestamp"] and x["last_timestamp"] for x in results)


async def test_smssender_send_waits_for_the_real_modem(
    gateway: Gateway, api: httpx.AsyncClient, native: httpx.AsyncClient
) -> None:
    text = "SMSSender " + uuid.uuid4().hex[:8]
    params = quote(json.dumps({"phone": MODEM_NUMBER, "text": text}))
    r = await api.get(f"/?c=send_sms&access-token={gateway.secret}&params={params}")
    # Answered only once the modem worker reported the send: the message is sent already.
    assert (r.status_code, r.json()) == (200, {"response": "success", "code": 200})
    listed = (await native.get("/v1/messages", params={"to": "+" + MODEM_NUMBER})).json()
    [mid] = [m["id"] for m in listed["data"] if m["text"] == text]
    detail = (await native.get(f"/v1/messages/{mid}")).json()
    assert detail["status"] in {"sent", "delivered"}, detail
    assert detail["parts_detail"][0]["route"].startswith("modem:m")
    await wait_status(native, mid, {"delivered"})  # and its status report comes back
    sim = httpx.AsyncClient(base_url=gateway.stack.modem_control)
    async with sim:
        sent = [
            s["text"]
            for n in range(1, gateway.stack.modems + 1)
            for s in (await sim.get(f"/modems/{n}/sent")).json()
        ]
    assert sent.count(text) == 1  # the simulated modem sent it, once


async def test_smsapiserver_send_query_and_sse_receipt(
    gateway: Gateway, api: httpx.AsyncClient
) -> None:
    headers = gateway.bearer
    async with api.stream("GET", "/v1/sse", headers=headers) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        # The stream subscribes from the moment it starts and says nothing before its
        # first event: an incoming SMS, injected until one arrives, shows it is live.
        canary = "canary " + uuid.uuid4().hex[:8]
        incoming = await _first_data(lines, canary, gateway, inject=True)
        assert incoming["text"] == canary and incoming["emsclass"] == 0

        r = await api.post(
            "/v1/send",
            headers=headers,
            data={"src": "bart", "dst": SMPP_NUMBER, "text": "hi", "register": "final"},
        )
        assert r.status_code == 200, r.text
        mid = r.json()["message_id"]
        receipt = await _first_data(lines, f"id:{mid} ", gateway)
    assert receipt["src"] == "+" + SMPP_NUMBER and receipt["dst"] == "bart"
    assert receipt["emsclass"] == 4 and "stat:DELIVRD" in receipt["text"]

    r = await api.get("/v1/query", params={"src": "bart", "message_id": mid}, headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert body["message_state"] == "DELIVERED" and body["error_code"] == 0
    assert len(body["final_date"]) == 16


async def _first_data(
    lines: AsyncIterator[str], needle: str, gateway: Gateway, *, inject: bool = False
) -> dict[str, Any]:
    """The first `Data:` event whose text contains `needle` (others are skipped); with
    `inject`, the needle is sent to the simulated modem as an incoming SMS until it shows."""

    async def read() -> dict[str, Any]:
        async for line in lines:
            if line.startswith("Data: "):
                data: dict[str, Any] = json.loads(line[len("Data: ") :])
                if needle in data.get("text", ""):
                    return data
        raise AssertionError("the stream ended")

    reader = asyncio.ensure_future(read())
    try:
        if inject:
            async with httpx.AsyncClient(base_url=gateway.stack.modem_control) as sim:
                for _ in range(20):
                    r = await sim.post(
                        "/modems/1/inject", json={"from": "+79215550000", "text": needle}
                    )
                    assert r.status_code in (200, 201), r.text
                    done, _ = await asyncio.wait({reader}, timeout=3)
                    if done:
                        break
        return await asyncio.wait_for(reader, 30)
    finally:
        reader.cancel()


async def test_smsapiserver_websockets_submit_and_deliver_the_receipt(gateway: Gateway) -> None:
    base = gateway.stack.api_url.replace("http://", "ws://")
    headers = gateway.bearer
    async with (
        websockets.connect(base + "/v1/ws/jsonrpc/events", additional_headers=headers) as events,
        websockets.connect(base + "/v1/ws/jsonrpc", additional_headers=headers) as rpc,
    ):

        async def next_text() -> str:
            call = json.loads(await events.recv())
            assert call["method"] == "SM.Deliver"
            await events.send(json.dumps({"id": call["id"], "result": None, "error": None}))
            return str(call["params"][0]["text"])

        # As with SSE: nothing says the event stream is live until an event comes through.
        canary = "canary " + uuid.uuid4().hex[:8]
        async with httpx.AsyncClient(base_url=gateway.stack.modem_control) as sim:
            for _ in range(20):
                r = await sim.post(
                    "/modems/2/inject", json={"from": "+79215550001", "text": canary}
                )
                assert r.status_code in (200, 201), r.text
                try:
                    while await asyncio.wait_for(next_text(), 3) != canary:
                        pass
                    break
                except TimeoutError:
                    continue
            else:
                raise AssertionError("the event WebSocket never delivered the canary")

        params = {"src": "bart", "dst": MODEM_NUMBER, "text": "rpc", "register": "final"}
        await rpc.send(json.dumps({"method": "SM.Submit", "params": [params], "id": 1}))
        reply = json.loads(await asyncio.wait_for(rpc.recv(), 30))
        assert reply["id"] == 1 and reply["error"] is None, reply
        mid = reply["result"]["message_id"]

        async def receipt() -> str:
            while True:
                text = await next_text()
                if f"id:{mid} " in text:
                    return text

        assert "stat:DELIVRD" in await asyncio.wait_for(receipt(), 30)
        await rpc.send(json.dumps({"method": "SM.Query", "params": [{"message_id": mid}], "id": 2}))
        reply = json.loads(await asyncio.wait_for(rpc.recv(), 30))
        assert reply["id"] == 2 and reply["result"]["message_state"] == "DELIVERED", reply
