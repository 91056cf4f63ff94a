"""Graceful lifecycle (issue 17): SIGTERM finishes the work in hand within
`shutdown_timeout`, logs what it left and exits 0; `/readyz` names each check (broker,
store, modems, binds) and answers 503 when one fails; one message can be followed through
every service's JSON logs by its `message_id`.

Every service runs as its own process (`smsgw …`), as in production."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from aiohttp import web

from smsgw_shared.testing.relay import TcpRelay
from tests.conftest import wait_status
from tests.e2e.stack import Stack

# Each test starts several services, some twice; a stalled test broker makes that slower.
pytestmark = pytest.mark.timeout(300)


@dataclass
class LifecycleStack(Stack):
    """A Stack whose processes may get their own `SMSGW_*` variables (one process with a
    shorter shutdown bound, or reaching RabbitMQ through a relay)."""

    env_for: dict[str, dict[str, str]] = field(default_factory=dict)
    _starting: str = ""

    def env(self) -> dict[str, str]:
        return super().env() | self.env_for.get(self._starting, {})

    def start(self, name: str, *argv: str) -> Any:
        self._starting = name
        try:
            return super().start(name, *argv)
        finally:
            self._starting = ""

    def top_level(self, **settings: object) -> None:
        """Set top-level config keys (log format and level, shutdown_timeout)."""
        assert self.config is not None
        text = self.config.read_text()
        for key, value in settings.items():
            line = f"{key} = {json.dumps(value)}"
            head, sep, rest = text.partition("\n[api]")
            lines = [ln for ln in head.splitlines() if not ln.startswith(f"{key} =")]
            text = "\n".join([*lines, line]) + sep + rest
        self.config.write_text(text)

    def json_lines(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines process `name` wrote (other output skipped)."""
        out = []
        for raw in (self.workdir / f"{name}.log").read_text(errors="replace").splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    async def exit_code(self, name: str, timeout: float = 60) -> int:
        """SIGTERM `name` and wait for it to exit; its exit code."""
        p = self.procs.pop(name)
        p.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(p.wait, timeout)


SERVICES = {
    "inbound": ("inbound", "inbound"),
    "modem-worker": ("modem-worker", "modem_metrics"),
    "smpp-worker": ("smpp-worker", "smpp_metrics"),
}


@pytest.fixture
async def lstack(tmp_path, database_url, broker_url, amqp) -> AsyncIterator[LifecycleStack]:
    s = LifecycleStack.in_test(tmp_path, amqp, database_url, broker_url)
    s.write_config()
    s.top_level(log_format="json", log_level="DEBUG", shutdown_timeout=20.0)
    try:
        yield s
    finally:
        s.stop_all()


def _start(s: LifecycleStack, name: str) -> None:
    if name == "api":
        s.start("api", "api")
    else:
        s.start(name, SERVICES[name][0])


async def launch(s: LifecycleStack, *names: str) -> None:
    """Start the simulators and the named services; wait until each is ready.

    A service that gave up at start because RabbitMQ did not answer its connect within 10 s
    is started again: the shared test broker sometimes stalls for half a minute while
    other tests create or delete their quorum queues."""
    if "sim-smsc" not in s.procs:
        s.start("sim-smsc", "sim", "smsc")
    if "sim-modem" not in s.procs:
        s.start("sim-modem", "sim", "modem")
    for name in names:
        _start(s, name)
    # Generous: on a loaded 2-core host importing a service alone can take 10 s.
    deadline = asyncio.get_running_loop().time() + 180
    waiting = set(names)
    async with httpx.AsyncClient(timeout=2) as c:
        while waiting:
            assert asyncio.get_running_loop().time() < deadline, f"not ready: {waiting}"
            for name in sorted(waiting):
                port = s.ports["api"] if name == "api" else s.ports[SERVICES[name][1]]
                if s.procs[name].poll() is not None:
                    assert "RabbitMQ is not reachable" in s.logs(name), s.logs(name)
                    s.procs.pop(name)
                    _start(s, name)
                    continue
                try:
                    if (await c.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        waiting.discard(name)
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(0.2)


def client_for(s: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=s.api_url, headers={"Authorization": f"Bearer {s.api_key}"}, timeout=30
    )


def stopped_line(s: LifecycleStack, name: str) -> dict[str, Any]:
    """The last line a stopped service logged: what it had in hand and what it left."""
    lines = [r for r in s.json_lines(name) if "unfinished" in r]
    assert lines, f"{name} logged no 'stopped' line:\n{s.logs(name)}"
    return lines[-1]


async def send(client: httpx.AsyncClient, to: str, text: str, **extra: object) -> str:
    r = await client.post("/v1/messages", json={"to": to, "text": text, **extra})
    assert r.status_code == 202, r.text
    return str(r.json()["messages"][0]["id"])


async def wait_until(probe: Any, what: str, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- SIGTERM --------------------------------------------------------------------------------


async def test_smpp_worker_sigterm_finishes_the_job_in_hand_or_gives_it_back(
    lstack: LifecycleStack,
):
    s = lstack
    await launch(s, "inbound", "smpp-worker", "api")
    smsc = httpx.AsyncClient(base_url=s.smsc_control)
    async with client_for(s) as client, smsc:

        async def held() -> bool:
            return bool((await smsc.get("/stats")).json()["held"])

        # 1. The SMSC holds the submit_sm_resp: the job is in the worker's hands at SIGTERM;
        # it is answered a second later, inside the bound.
        assert (await smsc.post("/config", json={"hold": True})).status_code == 200
        mid = await send(client, "+79160007001", "in hand at SIGTERM")
        await wait_until(held, "the SMSC to hold the submit")
        p = s.procs["smpp-worker"]
        p.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        assert p.poll() is None, "the worker left with a job in hand"
        assert (await smsc.post("/release")).status_code == 200
        assert await asyncio.to_thread(p.wait, 60) == 0
        s.procs.pop("smpp-worker")
        line = stopped_line(s, "smpp-worker")
        assert line["msg"].startswith("stopped: 0 jobs unfinished"), line
        assert line["in_hand"] == 1 and line["unfinished"] == 0, line
        msg = await wait_status(client, mid, {"sent", "delivered"})
        assert msg["parts_detail"][0]["provider_id"]
        assert (await smsc.get("/stats")).json()["accepted"] == 1

        # 2. A worker whose bound (1 s) runs out gives the job back: it says so, exits 0,
        # and the job is sent by the next worker.
        s.env_for["smpp-worker"] = {"SMSGW_SHUTDOWN_TIMEOUT": "1"}
        await launch(s, "smpp-worker")
        assert (await smsc.post("/config", json={"hold": True})).status_code == 200
        mid2 = await send(client, "+79160007002", "given back at SIGTERM")
        await wait_until(held, "the SMSC to hold the submit")
        assert await s.exit_code("smpp-worker") == 0
        line = stopped_line(s, "smpp-worker")
        assert line["unfinished"] == 1, line
        assert "1 jobs unfinished" in line["msg"] and "redelivered" in line["msg"], line
        assert (await smsc.post("/config", json={"hold": False})).status_code == 200
        del s.env_for["smpp-worker"]
        await launch(s, "smpp-worker")
        await wait_status(client, mid2, {"delivered"}, timeout=60)


async def test_modem_worker_sigterm_finishes_the_send_in_hand(lstack: LifecycleStack):
    s = lstack
    await launch(s, "inbound", "modem-worker", "api")
    modems = httpx.AsyncClient(base_url=s.modem_control)
    async with client_for(s) as client, modems:
        for n in (1, 2):
            r = await modems.post(f"/modems/{n}/faults", json={"send_latency": 2})
            assert r.status_code == 200, r.text
        mid = await send(client, "+79210007001", "modem in hand at SIGTERM")

        async def submitting() -> bool:
            return any(m["submitting"] for m in (await modems.get("/modems")).json())

        await wait_until(submitting, "a modem to hold the job")
        assert await s.exit_code("modem-worker") == 0
        line = stopped_line(s, "modem-worker")
        assert line["msg"].startswith("stopped: 0 jobs unfinished"), line
        assert line["in_hand"] >= 1 and line["unfinished"] == 0, line
        # Sent by the worker that was told to stop, not by a successor.
        msg = await wait_status(client, mid, {"sent", "delivered"})
        assert msg["parts_detail"][0]["provider_id"] is not None
        sent = sum(m["sent"] for m in (await modems.get("/modems")).json())
        assert sent == 1


async def test_api_and_inbound_sigterm_exit_0_and_lose_nothing(lstack: LifecycleStack):
    s = lstack
    await launch(s, "inbound", "smpp-worker", "api")
    async with client_for(s) as client:
        # Requests in flight when the API is told to stop: each answered 202 is kept.
        first = asyncio.Event()

        async def one(i: int) -> str | None:
            await asyncio.sleep(i * 0.02)
            try:
                mid = await send(client, f"+7916001{i:04d}", f"burst {i}")
            except (httpx.HTTPError, AssertionError):
                return None
            first.set()
            return mid

        burst = [asyncio.create_task(one(i)) for i in range(100)]
        await asyncio.wait_for(first.wait(), 30)
        assert await s.exit_code("api") == 0
        accepted = [m for m in await asyncio.gather(*burst) if m]
        assert accepted
        line = stopped_line(s, "api")
        assert line["msg"].startswith(("stopped: 0 jobs unfinished", "stopped with")), line
        # The inbound service too: its events in hand are applied, or given back.
        assert await s.exit_code("inbound") == 0
        line = stopped_line(s, "inbound")
        assert "events unfinished" in line["msg"], line
        await launch(s, "inbound", "api")
        for mid in accepted:
            await wait_status(client, mid, {"delivered"}, timeout=60)


# -- readiness ------------------------------------------------------------------------------


async def _ready(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(url + "/readyz")
        return r.status_code, r.json()


async def test_readiness_names_each_check_and_fails_when_a_device_or_the_broker_is_gone(
    lstack: LifecycleStack,
):
    s = lstack
    # The API reaches RabbitMQ through a relay that is killed (the shared broker stays up).
    u = urlsplit(s.amqp_url)
    relay = TcpRelay(u.hostname or "127.0.0.1", u.port or 5672)
    port = await relay.start()
    netloc = u.netloc.rsplit(":", 1)[0] if u.port else u.netloc
    s.env_for["api"] = {"SMSGW_AMQP_URL": urlunsplit(u._replace(netloc=f"{netloc}:{port}"))}
    try:
        await launch(s, "modem-worker", "smpp-worker", "api")
        modem = f"http://127.0.0.1:{s.ports['modem_metrics']}"
        smpp = f"http://127.0.0.1:{s.ports['smpp_metrics']}"
        assert await _ready(modem) == (
            200,
            {"status": "ready", "checks": {"broker": "ok", "modems": "ok"}, "failed": []},
        )
        assert await _ready(smpp) == (
            200,
            {"status": "ready", "checks": {"broker": "ok", "binds": "ok"}, "failed": []},
        )
        assert await _ready(s.api_url) == (
            200,
            {"status": "ready", "checks": {"broker": "ok", "store": "ok"}, "failed": []},
        )

        # The SMSC goes away: no bind is bound.
        s.stop("sim-smsc")

        async def smpp_down() -> dict[str, Any] | None:
            code, body = await _ready(smpp)
            return body if code == 503 else None

        body = await wait_until(smpp_down, "the SMPP worker to be unready", timeout=60)
        assert body == {
            "status": "unavailable",
            "checks": {"broker": "ok", "binds": "failing"},
            "failed": ["binds"],
        }

        # Both modems go away: no modem is connected.
        s.stop("sim-modem")

        async def modem_down() -> dict[str, Any] | None:
            code, body = await _ready(modem)
            return body if code == 503 else None

        body = await wait_until(modem_down, "the modem worker to be unready", timeout=60)
        assert body["checks"] == {"broker": "ok", "modems": "failing"}
        assert body["failed"] == ["modems"]

        # The API's broker connection is lost.
        await relay.kill()

        async def api_down() -> dict[str, Any] | None:
            code, body = await _ready(s.api_url)
            return body if code == 503 else None

        body = await wait_until(api_down, "the API to be unready", timeout=60)
        assert body["checks"] == {"broker": "failing", "store": "ok"}
        assert body["failed"] == ["broker"]

        # Back: ready again.
        await relay.start()
        await s.wait_http(s.api_url + "/readyz", timeout=60)
        s.start("sim-smsc", "sim", "smsc")
        await s.wait_http(smpp + "/readyz", timeout=60)
    finally:
        s.stop_all()
        await relay.kill()


# -- one message through every service's logs ------------------------------------------------


async def test_one_message_can_be_followed_by_id_through_every_service_log(
    lstack: LifecycleStack,
):
    s = lstack
    hits: list[dict[str, Any]] = []

    async def callback(request: web.Request) -> web.Response:
        hits.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", callback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cb_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await launch(s, "inbound", "smpp-worker", "api")
        async with client_for(s) as client:
            mid = await send(
                client,
                "+79160007777",
                "follow me",
                status_callback=f"http://127.0.0.1:{cb_port}/status",
            )
            await wait_status(client, mid, {"delivered"})

            async def delivered_callback() -> bool:
                return any(h.get("data", {}).get("status") == "delivered" for h in hits)

            await wait_until(delivered_callback, "the delivered status callback")
            await asyncio.sleep(0.5)  # the webhook's log line follows its answer
    finally:
        await runner.cleanup()
        s.stop_all()

    def about(name: str) -> list[str]:
        return [r["msg"] for r in s.json_lines(name) if r.get("message_id") == mid]

    api, smpp, inbound = about("api"), about("smpp-worker"), about("inbound")
    assert "accepted" in api, api
    assert "job sent" in smpp, smpp
    assert "projected sent" in inbound and "projected delivered" in inbound, inbound
    assert any(m.startswith("webhook delivery succeeded") for m in inbound), inbound
    # Same field, same value, in every service: grep -F '"message_id": "<id>"' finds them.
    needle = f'"message_id": "{mid}"'
    for name in ("api", "smpp-worker", "inbound"):
        assert needle in Path(s.workdir / f"{name}.log").read_text(), name
