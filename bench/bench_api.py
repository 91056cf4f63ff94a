"""API ingress benchmark: single-recipient POST /v1/messages at concurrency 50, and one
request with 1,000 recipients. Persistence and publisher confirms on, real PostgreSQL and
RabbitMQ on this machine. Prints figures; asserts nothing. With `wrk` installed the
single-recipient run is repeated with it (a C load generator leaves the API more of the CPU).

"Accepted" rates count 202 answers. The sustained batch phase also waits until every job
has left the outbox and is in its queue, and prints that end-to-end rate: an API can
accept faster than it publishes for a while, and only the end-to-end figure holds.

    .venv/bin/python bench/bench_api.py [--requests 20000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import aiohttp
import asyncpg

from smsgw_shared.amqp import AmqpConnection, Topology
from smsgw_shared.store.db import drop_database
from smsgw_shared.store.migrate import upgrade
from smsgw_shared.testing import free_port

AMQP = os.environ.get("SMSGW_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get("SMSGW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


# Every phase sends to numbers no earlier phase used: valid numbers are cached by the API,
# and a benchmark that repeats them would measure the cache, not the parsing.
WRK_SCRIPT = """
counter = tonumber(os.getenv("SMSGW_BENCH_BASE"))
request = function()
  counter = counter + 1
  local body = string.format('{"to":"+7921%07d","text":"bench %d"}', counter % 10000000, counter)
  return wrk.format("POST", "/v1/messages", {["Content-Type"]="application/json",
    ["Authorization"]="Bearer " .. os.getenv("SMSGW_BENCH_KEY")}, body)
end
response = function(status, headers, body)
  if status ~= 202 then error("status " .. status) end
end
"""


def with_wrk(base: str, key: str, concurrency: int, seconds: int) -> str:
    """wrk (C, one thread) as the load generator: the Python one below takes a good part
    of a core that the API would otherwise have on this 2-core machine."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", f.name, base],
            env=dict(os.environ, SMSGW_BENCH_KEY=key, SMSGW_BENCH_BASE=str(next_numbers(10**6))),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (
        f"single-recipient POST /v1/messages with wrk, {concurrency} connections, {seconds}s: "
        f"{float(rate.group(1)) if rate else 0:,.0f} accepted/s; latency "
        f"p50 {p50.group(1) if p50 else '?'}, p99 {p99.group(1) if p99 else '?'}"
        + (f"; {errors.group(1)} errors" if errors else "")
    )


_NUMBERS = itertools.count(random.randrange(1000) * 10**6, 1)


def next_numbers(n: int) -> int:
    """The first of `n` subscriber numbers (mod 10^7) no other phase of this run uses."""
    first = next(_NUMBERS)
    for _ in range(n - 1):
        next(_NUMBERS)
    return first


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def load(base: str, key: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    first = next_numbers(total)
    counter = iter(range(first, first + total))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=conn, headers=headers) as s:

        async def worker() -> None:
            for i in counter:
                body = {"to": f"+7921{i % 10_000_000:07d}", "text": f"bench {i}"}
                t0 = time.perf_counter()
                async with s.post("/v1/messages", json=body) as r:
                    await r.read()
                    if r.status != 202:
                        raise RuntimeError(f"{r.status}: {await r.text()}")
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies


async def big_batches(base: str, key: str, n: int, same: list[str] | None = None) -> list[float]:
    """`n` requests of 1,000 recipients: new numbers each time, or the list `same`."""
    out = []
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {key}"}) as s:
        for _ in range(n):
            first = next_numbers(1000)
            to = same or [f"+7922{(first + i) % 10**7:07d}" for i in range(1000)]
            t0 = time.perf_counter()
            async with s.post("/v1/messages", json={"to": to, "text": "batch"}) as r:
                await r.read()
                assert r.status == 202, r.status
            out.append(time.perf_counter() - t0)
    return out


async def queued_jobs(amqp: AmqpConnection, names: list[str]) -> int:
    """Messages waiting in these queues (the ones that exist)."""
    total = 0
    for name in names:
        ch = await amqp.connection.channel()
        try:
            q = await ch.declare_queue(name, passive=True)
            total += q.declaration_result.message_count or 0
        except Exception:
            pass
        finally:
            if not ch.is_closed:
                await ch.close()
    return total


async def outbox_empty(db: str, patience: float) -> tuple[int, int]:
    """Wait (up to `patience` seconds) for the outbox to be empty: its size then and now."""
    conn = await asyncpg.connect(db)
    try:
        first = left = await conn.fetchval("SELECT count(*) FROM outbox")
        deadline = time.perf_counter() + patience
        while left and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
            left = await conn.fetchval("SELECT count(*) FROM outbox")
    finally:
        await conn.close()
    return first, left


def cpu_seconds(api_pid: int) -> dict[str, float]:
    """CPU time used so far by the API, PostgreSQL (every backend), RabbitMQ and this
    load generator, from /proc (Linux): where the cores go during a phase."""
    tick = os.sysconf("SC_CLK_TCK")
    out = dict.fromkeys(("api", "postgres", "rabbitmq", "bench"), 0.0)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(pid) == api_pid:
            out["api"] += used
        elif int(pid) == os.getpid():
            out["bench"] += used
        elif comm.startswith("postgres"):
            out["postgres"] += used
        elif comm.startswith(("beam", "erl_child", "epmd")):
            out["rabbitmq"] += used
    return out


async def sustained(
    base: str,
    key: str,
    db: str,
    amqp: AmqpConnection,
    seconds: float,
    concurrency: int,
    api_pid: int,
) -> str:
    """1,000-recipient requests at `concurrency` for `seconds`; then wait for the outbox to
    drain. Recipients/s accepted, and end to end (until every job is in its queue)."""
    names = amqp.topology.all_queue_names(["modem:*", "smpp:*"], [])
    await outbox_empty(db, 60)  # the earlier phases' jobs are all in their queues
    before = await queued_jobs(amqp, names)
    sent = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal sent
        async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {key}"}) as s:
            while time.perf_counter() < stop:
                first = next_numbers(1000)
                to = [f"+7924{(first + i) % 10**7:07d}" for i in range(1000)]
                async with s.post("/v1/messages", json={"to": to, "text": "sustained"}) as r:
                    await r.read()
                    assert r.status == 202, r.status
                sent += 1000

    cpu0 = cpu_seconds(api_pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    accepted = time.perf_counter() - t0
    left_at_end, left = await outbox_empty(db, 120)
    drained = time.perf_counter() - t0
    cpu1 = cpu_seconds(api_pid)
    in_queues = await queued_jobs(amqp, names) - before
    per = {k: (cpu1[k] - cpu0[k]) / max(sent, 1) * 1e6 for k in cpu0}
    busy = sum(cpu1[k] - cpu0[k] for k in cpu0) / drained
    return (
        f"sustained 1,000-recipient requests at concurrency {concurrency} for {seconds:.0f}s: "
        f"{sent:,} accepted ({sent / accepted:,.0f}/s); outbox {left_at_end:,} at the end, "
        f"{left:,} after {drained - accepted:.1f}s more; {in_queues:,} jobs in queues; "
        f"end to end {sent / drained:,.0f} recipients/s\n"
        "  CPU a recipient: "
        + ", ".join(f"{k} {v:.0f} µs" for k, v in per.items())
        + f" ({sum(per.values()):.0f} µs in all; {busy * 100:.0f} % of one core busy)"
    )


async def wait_ready(base: str) -> None:
    async with aiohttp.ClientSession(base) as s:
        for _ in range(200):
            try:
                async with s.get("/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("API did not become ready")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--sustain", type=float, default=10.0, help="seconds of batch load")
    ap.add_argument("--batch-concurrency", type=int, default=4, help="of the sustained phase")
    args = ap.parse_args()
    ns = "bench" + uuid.uuid4().hex[:6]
    db = f"{PG}/smsgw_bench_{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(upgrade, db)
    port = free_port()
    key = "sgw_bench_" + uuid.uuid4().hex
    env = dict(
        os.environ,
        SMSGW_NAMESPACE=ns,
        SMSGW_DATABASE_URL=db,
        SMSGW_AMQP_URL=AMQP,
        SMSGW_BOOTSTRAP_API_KEY=key,
        SMSGW_LOG_LEVEL="WARNING",
        SMSGW_ENVIRONMENT="development",  # guest/guest and no database password
    )
    env.pop("SMSGW_CONFIG", None)
    api = subprocess.Popen(
        [sys.executable, "-m", "smsgw_cli.main", "api", "--port", str(port)], env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base)
        await load(base, key, 500, args.concurrency)  # warm-up
        elapsed, lat = await load(base, key, args.requests, args.concurrency)
        print(
            f"single-recipient POST /v1/messages, concurrency {args.concurrency}: "
            f"{args.requests / elapsed:,.0f} accepted/s over {args.requests} requests; "
            f"latency p50 {statistics.median(lat) * 1000:.1f} ms, "
            f"p99 {pct(lat, 0.99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms"
        )
        if shutil.which("wrk"):
            print(with_wrk(base, key, args.concurrency, 15))
        else:
            print("(wrk not installed: `apt-get install wrk` for a lighter load generator)")
        batches = await big_batches(base, key, 5)
        print(
            f"1,000 recipients in one request: median {statistics.median(batches) * 1000:.0f} ms"
            f", max {max(batches) * 1000:.0f} ms "
            f"({1000 / statistics.median(batches):,.0f} recipients/s)"
        )
        t0 = time.perf_counter()
        await asyncio.gather(*(big_batches(base, key, 3) for _ in range(4)))
        took = time.perf_counter() - t0
        print(f"1,000-recipient requests at concurrency 4: {12_000 / took:,.0f} recipients/s")
        same = [f"+7923{i:07d}" for i in range(1000)]
        await big_batches(base, key, 1, same)  # the API now knows these numbers
        t0 = time.perf_counter()
        await asyncio.gather(*(big_batches(base, key, 3, same) for _ in range(4)))
        took = time.perf_counter() - t0
        print(
            "the same 1,000 numbers again (numbers already validated), concurrency 4: "
            f"{12_000 / took:,.0f} recipients/s"
        )
        amqp = AmqpConnection(AMQP, Topology(ns))
        await amqp.connect()
        try:
            print(
                await sustained(base, key, db, amqp, args.sustain, args.batch_concurrency, api.pid)
            )
        finally:
            await amqp.close()
    finally:
        api.terminate()
        api.wait(15)
        topo = Topology(ns)
        conn = AmqpConnection(AMQP, topo)
        await conn.connect()
        ch = await conn.connection.channel()
        for name in topo.all_queue_names(["modem:*", "smpp:*"], []):
            await ch.queue_delete(name)
        for name, _ in topo.exchanges():
            await ch.exchange_delete(name)
        await conn.close()
        await drop_database(db)


if __name__ == "__main__":
    asyncio.run(main())
