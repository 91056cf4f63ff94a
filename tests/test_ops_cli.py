"""The ops CLI (`smsgw status|send|tail|messages show|webhooks …`) as an operator runs it:
the `smsgw` command in a subprocess, talking HTTP to a whole gateway (api, inbound,
workers, simulators) started as processes. One gateway serves the whole file.

Its error cases without a gateway (unreachable, wrong key, missing scope, something down)
are in services/api/tests/test_ops_cli.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw_shared.amqp import AmqpConnection, Topology
from smsgw_shared.config import Settings
from smsgw_shared.testing.plugin import delete_namespace
from tests.e2e.stack import Stack, wait_routes_connected

# The first test also waits for the gateway to start; each runs the CLI many times.
pytestmark = pytest.mark.timeout(400)

MODEM_NUMBER = "+79203048606"  # the default route, modem:*
SMPP_NUMBER = "+79160001234"  # +7916… goes to smpp:b1
HOOK_NUMBER = "+79160007777"


def smsgw(
    stack: Stack, *argv: str, key: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run `smsgw ARGV` with SMSGW_API_URL / SMSGW_API_KEY pointing at the stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    env["SMSGW_API_URL"] = stack.api_url
    env["SMSGW_API_KEY"] = key or stack.api_key
    return subprocess.run(
        [sys.executable, "-m", "smsgw_cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_gateway(stack: Stack) -> None:
    """Start every process of the stack and wait until each route is connected."""
    stack.write_config()
    stack.start("sim-smsc", "sim", "smsc")
    stack.start("sim-modem", "sim", "modem")
    asyncio.run(stack.wait_http(stack.smsc_control + "/stats", timeout=120))
    asyncio.run(stack.wait_http(stack.modem_control + "/modems", timeout=120))
    stack.start("inbound", "inbound")
    stack.start("modem-worker", "modem-worker")
    stack.start("smpp-worker", "smpp-worker")
    stack.start("api", "api")
    asyncio.run(_ready(stack))


async def _ready(stack: Stack) -> None:
    # Generous: on a loaded 2-core host importing a service alone can take 10 s.
    await stack.wait_http(stack.api_url + "/readyz", timeout=120)
    for port in ("inbound", "modem_metrics", "smpp_metrics"):
        await stack.wait_http(f"http://127.0.0.1:{stack.ports[port]}/healthz", timeout=120)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.api_key}"}
    ) as c:
        await wait_routes_connected(c, timeout=60)


async def delete_broker_namespace(namespace: str, broker_url: str) -> None:
    settings = Settings.model_validate({"namespace": namespace, "amqp_url": broker_url})
    conn = AmqpConnection(broker_url, Topology(namespace, [0.5, 1.0, 2.0]), name="pytest")
    await conn.connect()
    try:
        await delete_namespace(conn, settings)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, broker_url: str
) -> Iterator[Stack]:
    namespace = "t" + uuid.uuid4().hex[:10]
    s = Stack(
        workdir=tmp_path_factory.mktemp("ops-cli"),
        namespace=namespace,
        database_url=database_url,
        amqp_url=broker_url,
        api_key="sgw_e2e_" + uuid.uuid4().hex,
    )
    try:
        start_gateway(s)
        yield s
    finally:
        s.stop_all()
        asyncio.run(delete_broker_namespace(namespace, broker_url))


class Receiver:
    """A webhook endpoint answering 500 until told otherwise; records each POST."""

    def __init__(self) -> None:
        self.status = 500
        self.bodies: list[dict[str, Any]] = []
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(receiver.status)
                self.end_headers()
                with receiver.got:
                    receiver.bodies.append(json.loads(body))
                    receiver.got.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 30) -> None:
        with self.got:
            assert self.got.wait_for(lambda: len(self.bodies) >= n, timeout), self.bodies


def test_status_at_a_glance(stack: Stack) -> None:
    r = smsgw(stack, "status")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"smsgw at {stack.api_url}: OK" in r.stdout
    for route in ("modem:m1", "modem:m2", "smpp:b1"):
        assert route in r.stdout
    assert f"{stack.namespace}.jobs.modem.pool" in r.stdout
    assert "outbox: 0 job(s)" in r.stdout and "webhooks: " in r.stdout

    r = smsgw(stack, "status", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["ok"] and s["problems"] == [] and s["broker"]["connected"]
    assert {x["route"] for x in s["routes"]} == {"modem:m1", "modem:m2", "smpp:b1"}
    pool = next(q for q in s["queues"] if q["route"] == "modem:*")
    assert pool["consumers"] >= 1 and pool["messages"] == 0
    inbound = [q for q in s["queues"] if q["route"] is None]
    assert inbound and all(q["consumers"] >= 1 for q in inbound)


def test_send_one_and_follow_it_to_delivered(stack: Stack) -> None:
    r = smsgw(stack, "send", SMPP_NUMBER, "Hello from the CLI", "--wait", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    mid = lines[0].split()[0]
    assert f"{mid}  {SMPP_NUMBER}  queued  1 part(s) gsm7  route smpp:b1" == lines[0]
    assert lines[-1] == f"{mid}  delivered"

    r = smsgw(stack, "messages", "show", mid)
    assert r.returncode == 0, r.stderr
    assert f"message {mid}  delivered" in r.stdout
    assert "Hello from the CLI" in r.stdout and "history:" in r.stdout and "parts:" in r.stdout
    history = r.stdout.split("history:")[1]
    assert "REPORTED" in history.splitlines()[1]
    # The receipt's own time is in its column, not repeated in the detail.
    assert "reported at" not in history
    r = smsgw(stack, "messages", "show", mid, "--json")
    assert json.loads(r.stdout)["status"] == "delivered"


def test_send_rejected_number_exits_1(stack: Stack) -> None:
    r = smsgw(stack, "send", "12", "nope")
    assert r.returncode == 1
    assert "no_valid_recipients" in r.stderr


def test_send_csv_with_progress_and_summary(stack: Stack, tmp_path: Path) -> None:
    rows = ["to,text"]
    rows += [f"+7921000{i:04d},hello {i % 2}" for i in range(7)]
    rows += ["+79160009999,", "not-a-number,bad one"]
    path = tmp_path / "batch.csv"
    path.write_text("\n".join(rows) + "\n")
    r = smsgw(stack, "send", "--csv", str(path), "--text", "default text", "--progress")
    assert r.returncode == 1, r.stdout + r.stderr  # one recipient was rejected
    assert "9 recipient(s): 8 accepted, 1 rejected, 0 not sent" in r.stdout
    assert "[##############################] 9/9" in r.stderr
    assert "rejected not-a-number: invalid_number" in r.stderr

    path.write_text("phone\n+79210005550\n+79210005551\n")
    r = smsgw(stack, "send", "--csv", str(path), "--text", "all good", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["accepted"] == 2 and len(summary["ids"]) == 2

    path.write_text("who,what\n1,2\n")
    r = smsgw(stack, "send", "--csv", str(path))
    assert r.returncode == 2 and "needs a 'to' column" in r.stderr


def test_tail_follows_live_events_filtered(stack: Stack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    env |= {"SMSGW_API_URL": stack.api_url, "SMSGW_API_KEY": stack.api_key}
    argv = ["tail", "--type", "message.status.delivered", "--route", "smpp:b1", "--count", "1"]
    p = subprocess.Popen(
        [sys.executable, "-m", "smsgw_cli.main", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        first = p.stderr.readline()  # printed once the stream is live
        assert "following" in first, first + (p.stderr.read() if p.poll() is not None else "")
        modem = smsgw(stack, "send", MODEM_NUMBER, "not for this tail", "--wait", "60")
        assert modem.returncode == 0, modem.stderr
        r = smsgw(stack, "send", SMPP_NUMBER, "tail me")
        assert r.returncode == 0, r.stderr
        mid = r.stdout.split()[0]
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    [line] = out.splitlines()
    assert "message.status" in line and mid in line and "delivered via smpp:b1" in line


def test_webhook_deliveries_and_redeliver(stack: Stack) -> None:
    rec = Receiver()
    admin = {"Authorization": f"Bearer {stack.api_key}"}
    r = httpx.post(
        stack.api_url + "/v1/webhooks",
        json={
            "url": rec.url,
            "events": ["message.status.delivered"],
            "numbers": [HOOK_NUMBER],
            "description": "cli test",
        },
        headers=admin,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    try:
        r = smsgw(stack, "webhooks", "list")
        assert r.returncode == 0 and wid in r.stdout and rec.url in r.stdout, r.stderr

        sent = smsgw(stack, "send", HOOK_NUMBER, "hooked", "--wait", "60")
        assert sent.returncode == 0, sent.stderr
        rec.wait(3)  # the first attempt and the two retries (retry_schedule [0.3, 0.6])

        def dead() -> list[dict[str, Any]]:
            r = smsgw(stack, "webhooks", "deliveries", wid, "--status", "dead", "--json")
            assert r.returncode == 0, r.stderr
            out: list[dict[str, Any]] = json.loads(r.stdout)
            return out

        deadline = 100
        while not (rows := dead()) and deadline:
            deadline -= 1
        assert rows, "the delivery never went dead"
        did = rows[0]["id"]
        r = smsgw(stack, "webhooks", "deliveries", wid)
        assert did in r.stdout and "dead" in r.stdout and "500" in r.stdout
        r = smsgw(stack, "status", "--json")
        s = json.loads(r.stdout)
        assert s["webhooks"]["dead_last_hour"] >= 1, s["webhooks"]
        assert any("failed for good" in w for w in s["warnings"]), s["warnings"]

        rec.status = 200
        before = len(rec.bodies)
        r = smsgw(stack, "webhooks", "redeliver", wid, did)
        assert r.returncode == 0, r.stderr
        assert f"delivery {did} (message.status) is due again: pending" in r.stdout
        rec.wait(before + 1)
        r = smsgw(stack, "webhooks", "redeliver", wid, str(uuid.uuid4()))
        assert r.returncode == 1 and "404 delivery_not_found" in r.stderr
    finally:
        httpx.delete(f"{stack.api_url}/v1/webhooks/{wid}", headers=admin, timeout=30)
        rec.server.shutdown()


def test_status_says_what_is_down(stack: Stack) -> None:
    """Last in the file: stops the SMPP worker."""
    stack.stop("smpp-worker")
    r = smsgw(stack, "status")
    deadline = 60
    while "smpp:b1 is" not in r.stdout and deadline:  # until its heartbeat is stale
        deadline -= 1
        r = smsgw(stack, "status")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DOWN" in r.stdout.splitlines()[0]
    assert "problems:" in r.stdout and "smpp:b1 is" in r.stdout
