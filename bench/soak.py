"""Soak run (issue 19 item 7): the whole gateway at a steady rate for a long while, with
faults injected periodically, printing a line a minute so one can see that nothing is
lost and that memory and table sizes stay flat once retention applies.

    make soak                                   # 30 minutes at 20 sends/s
    SOAK_MINUTES=2 SOAK_RATE=20 .venv/bin/python bench/soak.py

Environment:
- `SOAK_MINUTES` (30), `SOAK_RATE` (20 sends/s: half to the SMSC simulator, half to two
  simulated modems), `SOAK_FAULT_EVERY` (30 s between faults);
- `SOAK_BROKER_CLOSE`: `ours` (default) closes every broker connection of this gateway
  (found by their client ports), `all` runs `rabbitmqctl close_all_connections` (only on a
  broker nobody else uses: it drops every client's connections);
- `SMSGW_AMQP_URL` (the machine's RabbitMQ) and `SOAK_RABBITMQ_NODE` (rabbitmqctl's `-n`
  for another broker), `SMSGW_BENCH_PG` (PostgreSQL server URL).

Faults, in turn: the SMPP worker SIGKILLed and started again; the broker connections
closed; the SMSC simulator dropping its sessions (`POST /disconnect`); the modem worker
SIGKILLed and started again. Retention is short (event log and finished webhook deliveries
after ~1 minute, messages after ~5, a pass every 20 s), so the tables stop growing within
minutes; a webhook receiver records every message's final status, which stays known
after retention has deleted the message.

Each minute: accepted, delivered, failed (failed, rejected, undelivered, expired),
duplicates at the simulators, overdue (accepted over 2 minutes ago, no final status yet),
each service's RSS (VmRSS) and the tables' sizes. At the end, after up to 3 minutes for
the last messages, lost (accepted, never final) and the table sizes. Exits 1 if anything
was lost. The namespace's queues and the database are removed at the end.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import httpx
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smsgw_shared.testing import free_port  # noqa: E402
from tests.e2e.stack import Stack, scratch  # noqa: E402

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
RATE = float(os.environ.get("SOAK_RATE", "20"))
FAULT_EVERY = float(os.environ.get("SOAK_FAULT_EVERY", "30"))
BROKER_CLOSE = os.environ.get("SOAK_BROKER_CLOSE", "ours")
AMQP = os.environ.get("SMSGW_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
AMQP_PORT = urlparse(AMQP.split(",")[0]).port or 5672
# rabbitmqctl's node (-n): the broker behind SMSGW_AMQP_URL when it is not the default one
CTL = ["rabbitmqctl", "-q", *(["-n", n] if (n := os.environ.get("SOAK_RABBITMQ_NODE")) else [])]
PG = os.environ.get("SMSGW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
FINAL = {"delivered", "failed", "rejected", "undelivered", "expired", "canceled"}
TABLES = ("messages", "message_events", "event_log", "webhook_deliveries")
RETAINED = ("messages", "event_log", "webhook_deliveries")
SERVICES = ("api", "inbound", "smpp-worker", "modem-worker")
RETENTION = """
[retention]
event_log_days = 0.0007
webhook_deliveries_days = 0.0007
messages_days = 0.0035
interval = 20.0
"""


class Receiver:
    """Webhook receiver: the last status of every message it heard of."""

    def __init__(self) -> None:
        self.port = free_port()
        self.final: dict[str, str] = {}
        self.runner: web.AppRunner | None = None

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        data = (await request.json()).get("data", {})
        if data.get("status") in FINAL:
            mid = str(data.get("message_id"))
            # delivered wins over a late `expired` or a repeated earlier status
            if self.final.get(mid) != "delivered":
                self.final[mid] = data["status"]
        return web.Response(status=204)


class Load:
    """Single-recipient sends at a steady rate, one task each."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.accepted: dict[str, tuple[str, float]] = {}  # id → (text, monotonic time)
        self.refused: collections.Counter[str] = collections.Counter()
        self.tasks: set[asyncio.Task[None]] = set()
        self.tag = uuid.uuid4().hex[:6]

    async def _send(self, n: int) -> None:
        to = f"+7916{n % 10_000_000:07d}" if n % 2 == 0 else f"+7921{n % 10_000_000:07d}"
        text = f"soak {self.tag} #{n}"
        try:
            r = await self.client.post("/v1/messages", json={"to": to, "text": text})
        except httpx.HTTPError as exc:
            self.refused[type(exc).__name__] += 1
            return
        if r.status_code == 202:
            self.accepted[r.json()["messages"][0]["id"]] = (text, time.monotonic())
        else:
            self.refused[str(r.status_code)] += 1

    async def run(self, seconds: float) -> None:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            task = asyncio.create_task(self._send(n))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
        if self.tasks:
            await asyncio.wait(self.tasks)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def close_broker_connections(pids: set[int]) -> int:
    """Close this gateway's broker connections (or all, with SOAK_BROKER_CLOSE=all)."""
    if BROKER_CLOSE == "all":
        subprocess.run(
            [*CTL, "close_all_connections", "soak"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return -1
    ss = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{AMQP_PORT} )"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    ports = set()
    for line in ss.splitlines():
        m = re.search(rf"127\.0\.0\.1:(\d+)\s+\S+:{AMQP_PORT}\s.*pid=(\d+)", line)
        if m and int(m.group(2)) in pids:
            ports.add(int(m.group(1)))
    conns = subprocess.run(
        [*CTL, "list_connections", "pid", "peer_port", "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    closed = 0
    for line in conns.splitlines():
        pid, _, port = line.partition("\t")
        if port.strip().isdigit() and int(port) in ports:
            r = subprocess.run(
                [*CTL, "close_connection", pid, "soak fault"],
                capture_output=True,
                timeout=60,
            )
            closed += r.returncode == 0
    return closed


class Soak:
    def __init__(self, stack: Stack, database_url: str) -> None:
        self.stack = stack
        self.database_url = database_url
        self.receiver = Receiver()
        self.faults: list[str] = []
        self.restarts: collections.Counter[str] = collections.Counter()

    async def sent_texts(self, sims: httpx.AsyncClient) -> collections.Counter[str]:
        texts: collections.Counter[str] = collections.Counter()
        with contextlib.suppress(httpx.HTTPError, ValueError):
            for m in (await sims.get(f"{self.stack.smsc_control}/sent")).json():
                texts[m.get("text", "")] += 1
            for n in (1, 2):
                url = f"{self.stack.modem_control}/modems/{n}/sent"
                for m in (await sims.get(url)).json():
                    texts[m.get("text", "")] += 1
        return texts

    async def store_final(self, conn: asyncpg.Connection, ids: list[str]) -> dict[str, str]:
        rows = await conn.fetch(
            "SELECT id::text, status FROM messages WHERE id = ANY($1::uuid[])", ids
        )
        return {r[0]: r[1] for r in rows if r[1] in FINAL}

    async def tally(
        self, conn: asyncpg.Connection, load: Load, sims: httpx.AsyncClient
    ) -> dict[str, int]:
        final = dict(self.receiver.final)
        missing = [i for i in load.accepted if i not in final]
        final |= await self.store_final(conn, missing)
        sent = await self.sent_texts(sims)
        texts = {t for t, _ in load.accepted.values()}
        now = time.monotonic()
        statuses = collections.Counter(final.get(i) for i in load.accepted)
        return {
            "accepted": len(load.accepted),
            "delivered": statuses.get("delivered", 0),
            "failed": sum(v for k, v in statuses.items() if k not in (None, "delivered")),
            "duplicates": sum(sent[t] - 1 for t in texts if sent[t] > 1),
            "overdue": sum(
                1 for i, (_, t) in load.accepted.items() if i not in final and now - t > 120
            ),
            "open": statuses.get(None, 0),
        }

    async def sizes(self, conn: asyncpg.Connection) -> dict[str, int]:
        return {
            t: await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", t) for t in TABLES
        }

    async def rows(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Rows of the tables retention trims first (sizes lag: deleted rows' space is
        reused by later rows, not given back)."""
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in RETAINED}

    def supervise(self) -> None:
        """Start again, as a process manager would, a service that exited (a restarted
        worker whose first broker connection timed out exits)."""
        for name in SERVICES:
            p = self.stack.procs.get(name)
            if p is not None and p.poll() is not None:
                self.restarts[name] += 1
                self.stack.procs.pop(name)
                self.stack.start(name, name)

    async def fault(self, n: int, sims: httpx.AsyncClient) -> None:
        stack = self.stack
        kind = n % 4
        if kind == 0:
            stack.stop("smpp-worker", signal.SIGKILL)
            stack.start("smpp-worker", "smpp-worker")
            self.faults.append("smpp-worker SIGKILL")
        elif kind == 1:
            pids = {p.pid for p in stack.procs.values()}
            closed = await asyncio.to_thread(close_broker_connections, pids)
            self.faults.append(f"broker connections closed ({closed if closed >= 0 else 'all'})")
        elif kind == 2:
            r = await sims.post(f"{stack.smsc_control}/disconnect", json={"mode": "close"})
            self.faults.append(f"SMSC disconnect ({r.json().get('sessions')} sessions)")
        else:
            stack.stop("modem-worker", signal.SIGKILL)
            stack.start("modem-worker", "modem-worker")
            self.faults.append("modem-worker SIGKILL")

    async def run(self) -> int:
        stack = self.stack
        await self.receiver.up()
        headers = {"Authorization": f"Bearer {stack.api_key}"}
        conn = await asyncpg.connect(self.database_url)
        async with (
            httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client,
            httpx.AsyncClient(timeout=60) as sims,
        ):
            r = await client.post(
                "/v1/webhooks",
                json={
                    "url": f"http://127.0.0.1:{self.receiver.port}/hook",
                    "events": ["message.status"],
                },
            )
            r.raise_for_status()
            load = Load(client)
            seconds = MINUTES * 60
            driver = asyncio.create_task(load.run(seconds))
            start = time.monotonic()
            print(
                f"soak: {MINUTES:g} min at {RATE:g}/s, a fault every {FAULT_EVERY:g} s "
                f"(broker close: {BROKER_CLOSE})\n"
                "RSS in MB (api, inbound, smpp-worker, modem-worker); table sizes in kB "
                "(messages, message_events, event_log, webhook_deliveries); rows (messages, "
                "event_log, webhook_deliveries)\n"
                f"{'min':>4} {'accepted':>8} {'delivered':>9} {'failed':>6} {'dup':>4} "
                f"{'overdue':>7} {'open':>5} | "
                + " ".join(f"{s:>6}" for s in ("api", "inb", "smpp", "modem"))
                + " | "
                + " ".join(f"{t:>7}" for t in ("msgs", "events", "log", "hooks"))
                + " | "
                + " ".join(f"{t:>6}" for t in ("msgs", "log", "hooks")),
                flush=True,
            )
            next_fault, minute, faults = start + FAULT_EVERY, 1, 0
            try:
                while True:
                    deadline = start + minute * 60
                    while time.monotonic() < deadline and not driver.done():
                        self.supervise()
                        if time.monotonic() >= next_fault:
                            await self.fault(faults, sims)
                            faults += 1
                            next_fault += FAULT_EVERY
                        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                    if time.monotonic() >= deadline:
                        await self.line(f"{minute:>4}", conn, load, sims)
                        minute += 1
                    if driver.done():
                        break
            finally:
                await driver
            print(f"faults: {', '.join(self.faults) or 'none'}")
            if self.restarts:
                print(f"services that exited and were started again: {dict(self.restarts)}")
            # The last messages: up to 3 minutes for a final status.
            drain = time.monotonic() + 180
            while time.monotonic() < drain:
                t = await self.tally(conn, load, sims)
                if t["open"] == 0:
                    break
                await asyncio.sleep(2)
            t = await self.line(" end", conn, load, sims)
            sizes = await self.sizes(conn)
            rows = await self.rows(conn)
        await conn.close()
        await self.receiver.down()
        lost = t["open"]
        print(
            f"accepted {t['accepted']}, delivered {t['delivered']}, failed {t['failed']}, "
            f"lost {lost}, duplicates {t['duplicates']}, refused (never accepted) "
            f"{sum(load.refused.values())} {dict(load.refused)}\n"
            "table sizes: "
            + ", ".join(f"{k} {v / 1024:.0f} kB" for k, v in sizes.items())
            + "; rows: "
            + ", ".join(f"{k} {v}" for k, v in rows.items())
        )
        return 0 if lost == 0 else 1

    async def line(
        self, label: str, conn: asyncpg.Connection, load: Load, sims: httpx.AsyncClient
    ) -> dict[str, int]:
        t = await self.tally(conn, load, sims)
        sizes = await self.sizes(conn)
        rows = await self.rows(conn)
        rss = [rss_mb(p.pid) if (p := self.stack.procs.get(s)) else float("nan") for s in SERVICES]
        print(
            f"{label} {t['accepted']:>8} {t['delivered']:>9} {t['failed']:>6} "
            f"{t['duplicates']:>4} {t['overdue']:>7} {t['open']:>5} | "
            + " ".join(f"{v:>6.1f}" for v in rss)
            + " | "
            + " ".join(f"{sizes[k] // 1024:>7}" for k in TABLES)
            + " | "
            + " ".join(f"{v:>6}" for v in rows.values()),
            flush=True,
        )
        return t


async def until_ready(stack: Stack, url: str) -> None:
    """Wait for `url`; a service that exited because its first broker connection timed out
    (a busy shared RabbitMQ can stall handshakes for a while) is started again."""
    deadline = time.monotonic() + 240
    while True:
        try:
            await stack.wait_http(url, timeout=max(1.0, deadline - time.monotonic()))
            return
        except AssertionError:
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            broker = [n for n in dead if "RabbitMQ is not reachable" in stack.logs(n)[-400:]]
            if not dead or broker != dead or time.monotonic() > deadline:
                raise
            for name in dead:
                print(f"{name} could not reach RabbitMQ at its start: starting it again")
                stack.procs.pop(name)
                stack.start(name, name)


async def soak(workdir: Path, database_url: str) -> int:
    stack = Stack(
        workdir=workdir,
        namespace="soak" + uuid.uuid4().hex[:8],
        database_url=database_url,
        amqp_url=AMQP,
        api_key="sgw_soak_" + uuid.uuid4().hex,
    )
    stack.write_config(RETENTION)
    stack.start("sim-smsc", "sim", "smsc")
    stack.start("sim-modem", "sim", "modem")
    await asyncio.sleep(0.5)
    try:
        for name in SERVICES:
            stack.start(name, name)
        for port in ("api", "inbound", "modem_metrics", "smpp_metrics"):
            await until_ready(stack, f"http://127.0.0.1:{stack.ports[port]}/readyz")
        return await Soak(stack, database_url).run()
    except Exception:
        stack.print_logs()
        raise
    finally:
        stack.stop_all()
        await stack.remove_namespace()


def main() -> int:
    with scratch(PG, "soak") as (database_url, workdir):
        return asyncio.run(soak(workdir, database_url))


if __name__ == "__main__":
    sys.exit(main())
