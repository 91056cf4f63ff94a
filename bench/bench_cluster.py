"""A RabbitMQ cluster run: the pipeline on a 3-node cluster loses nothing when the node
leading its queues goes down mid-load (issue 19 item 3). Too slow for `make test`.

    .venv/bin/python bench/bench_cluster.py [--rate 20] [--seconds 60] [--kill-at 20]

Starts the 3-node cluster with the recipe (`SMSGW_RMQ_CLUSTER_RECIPE`, default
/work/shared/recipes/rabbitmq-cluster.sh; nodes c1..c3 on 5681..5683), a fresh database,
and the pipeline as processes (SMSC simulator, inbound, smpp-worker, api) with
`amqp_url` listing the three nodes. It checks that the namespace's queues are quorum
queues with a member on every node, drives single-recipient sends at a steady rate, and
`--kill-at` seconds in shuts down the node leading the job queue. Then it waits for every
accepted message and prints accepted, delivered, refused (never accepted: not lost),
duplicates at the SMSC and the time to recover. Exits 1 if anything accepted was not
delivered, 2 if the cluster could not be started. The cluster and the database are
removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smsgw_shared.store.db import drop_database  # noqa: E402
from smsgw_shared.store.migrate import upgrade  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402

RECIPE = os.environ.get("SMSGW_RMQ_CLUSTER_RECIPE", "/work/shared/recipes/rabbitmq-cluster.sh")
PG = os.environ.get("SMSGW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
PORTS = {1: 5681, 2: 5682, 3: 5683}


class ClusterError(Exception):
    """The recipe could not do what was asked."""


def recipe(*args: str, timeout: float = 240) -> str:
    try:
        r = subprocess.run(["bash", RECIPE, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"`{RECIPE} {' '.join(args)}`: {exc}") from exc
    if r.returncode != 0:
        raise ClusterError(
            f"`{RECIPE} {' '.join(args)}` exited {r.returncode}: {(r.stderr or r.stdout)[-1500:]}"
        )
    return r.stdout


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def list_queues(node: int, namespace: str) -> list[dict]:
    """The namespace's queues as seen from node cN: name, type, leader, members."""
    r = subprocess.run(
        [
            *("rabbitmqctl", "-q", "-n", f"c{node}@localhost", "list_queues"),
            *("name", "type", "leader", "members", "--formatter=json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        raise ClusterError(f"list_queues on c{node}: {r.stderr[-500:]}")
    return [q for q in json.loads(r.stdout or "[]") if q["name"].startswith(namespace + ".")]


def node_number(erlang_node: str) -> int:
    """`c2@localhost` → 2."""
    return int(erlang_node.split("@", maxsplit=1)[0].lstrip("c"))


class Load:
    """Single-recipient sends at a steady rate, each in its own task (a slow answer during
    the failover does not slow the schedule)."""

    def __init__(self, client: httpx.AsyncClient, rate: float, tag: str) -> None:
        self.client = client
        self.rate = rate
        self.tag = tag
        self.accepted: dict[str, tuple[str, float]] = {}  # id → (text, time accepted)
        self.refused: collections.Counter[str] = collections.Counter()
        self.slowest = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    async def _send(self, n: int) -> None:
        text = f"cluster {self.tag} #{n}"
        started = time.monotonic()
        try:
            r = await self.client.post("/v1/messages", json={"to": f"+7916{n:07d}", "text": text})
        except httpx.HTTPError as exc:
            self.refused[type(exc).__name__] += 1
            return
        finally:
            self.slowest = max(self.slowest, time.monotonic() - started)
        if r.status_code == 202:
            self.accepted[r.json()["messages"][0]["id"]] = (text, time.time())
        else:
            self.refused[str(r.status_code)] += 1

    async def run(self, seconds: float, at: dict[float, asyncio.Event]) -> None:
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < seconds:
            for t, ev in at.items():
                if elapsed >= t:
                    ev.set()
            task = asyncio.create_task(self._send(n))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, start + n / self.rate - time.monotonic()))
        if self.tasks:
            await asyncio.wait(self.tasks)


async def pipeline(args: argparse.Namespace, workdir: Path, database_url: str) -> int:
    urls = recipe("urls").strip()
    ns = "bc" + uuid.uuid4().hex[:8]
    stack = Stack(
        workdir=workdir,
        namespace=ns,
        database_url=database_url,
        amqp_url=urls,
        api_key="sgw_cluster_" + uuid.uuid4().hex,
        modems=0,
    )
    stack.write_config()
    stack.start("sim-smsc", "sim", "smsc")
    for name in ("inbound", "smpp-worker", "api"):
        stack.start(name, name)
    try:
        await stack.wait_http(stack.api_url + "/readyz", timeout=120)
        for port in ("inbound", "smpp_metrics"):
            await stack.wait_http(f"http://127.0.0.1:{stack.ports[port]}/readyz", timeout=120)
        return await drive(args, stack, database_url)
    except Exception:
        for name in stack.procs:
            print(f"--- {name}.log (tail)\n{stack.logs(name)[-1500:]}", file=sys.stderr)
        raise
    finally:
        stack.stop_all()


async def drive(args: argparse.Namespace, stack: Stack, database_url: str) -> int:
    ns = stack.namespace
    job_queue = f"{ns}.jobs.smpp.b1"
    queues = await asyncio.to_thread(list_queues, 1, ns)
    types = collections.Counter(q["type"] for q in queues)
    sizes = collections.Counter(len(q["members"]) for q in queues if q["type"] == "quorum")
    print(f"queues of {ns}: {len(queues)}, types {dict(types)}, quorum members {dict(sizes)}")
    job = next((q for q in queues if q["name"] == job_queue), None)
    if job is None or job["type"] != "quorum" or len(job["members"]) != 3:
        print(f"the job queue is not a quorum queue on three nodes: {job}", file=sys.stderr)
        return 1
    print(f"job queue {job_queue}: leader {job['leader']}, members {sorted(job['members'])}")

    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with (
        httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client,
        httpx.AsyncClient(timeout=30) as sims,
    ):
        load = Load(client, args.rate, uuid.uuid4().hex[:6])
        kill = asyncio.Event()
        driver = asyncio.create_task(load.run(args.seconds, {args.kill_at: kill}))
        await kill.wait()
        queues = await asyncio.to_thread(list_queues, 1, ns)
        leaders = collections.Counter(q["leader"] for q in queues if q["type"] == "quorum")
        victim = node_number(next(q["leader"] for q in queues if q["name"] == job_queue))
        print(f"leaders before: {dict(leaders)}; shutting down c{victim} (leads {job_queue})")
        stopped_at = time.time()
        await asyncio.to_thread(recipe, "stop", str(victim))
        down_took = time.time() - stopped_at
        print(f"c{victim} down after {down_took:.1f} s", flush=True)
        await driver
        alive = next(n for n in PORTS if n != victim)
        queues = await asyncio.to_thread(list_queues, alive, ns)
        leaders = collections.Counter(q["leader"] for q in queues if q["type"] == "quorum")
        print(f"leaders after: {dict(leaders)}")

        ids = list(load.accepted)
        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + args.drain
            while True:
                rows = await conn.fetch(
                    "SELECT status, count(*) FROM messages WHERE id = ANY($1::uuid[])"
                    " GROUP BY status",
                    ids,
                )
                statuses = collections.Counter({r[0]: r[1] for r in rows})
                if statuses.get("delivered", 0) == len(ids) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            done = await conn.fetch(
                "SELECT id::text, extract(epoch FROM done_at) AS t FROM messages"
                " WHERE id = ANY($1::uuid[]) AND status = 'delivered'",
                ids,
            )
        finally:
            await conn.close()
        sent = collections.Counter(
            m.get("text", "") for m in (await sims.get(f"{stack.smsc_control}/sent")).json()
        )

    texts = {text for text, _ in load.accepted.values()}
    duplicates = sum(sent[t] - 1 for t in texts if sent[t] > 1)
    never_sent = len(texts - set(sent))
    delivered = statuses.get("delivered", 0)
    lost = len(ids) - delivered
    done_at = {r["id"]: float(r["t"]) for r in done}
    # End-to-end latency (accepted → delivered) of each message; the normal one is that of
    # the messages accepted before the shutdown. Recovered: when the last message slowed
    # down by the failover (over three times the normal p99, at least 1 s) was delivered.
    latency = {i: done_at[i] - t for i, (_, t) in load.accepted.items() if i in done_at}
    before = sorted(v for i, v in latency.items() if load.accepted[i][1] < stopped_at)
    p99 = before[int(len(before) * 0.99)] if before else 0.0
    slow = max(1.0, 3 * p99)
    slowed = [done_at[i] for i, v in latency.items() if v > slow]
    recover = (max(slowed) - stopped_at) if slowed else 0.0
    times = sorted(done_at.values())
    gaps = [(b - a, a) for a, b in itertools.pairwise(times)]
    gap, gap_at = max(gaps) if gaps else (0.0, stopped_at)
    print(
        f"rate {args.rate:g}/s for {args.seconds:g} s, c{victim} shut down at "
        f"{args.kill_at:g} s (the shutdown took {down_took:.1f} s)\n"
        f"accepted {len(ids)}, delivered {delivered}, lost {lost} "
        f"(statuses {dict(statuses)}), refused {sum(load.refused.values())} "
        f"{dict(load.refused)}\n"
        f"duplicates at the SMSC {duplicates}, accepted but never at the SMSC {never_sent}\n"
        f"time to recover {recover:.1f} s from the shutdown ({len(slowed)} messages took "
        f"over {slow:.1f} s end to end, the last delivered then; normal p99 {p99:.2f} s, "
        f"worst {max(latency.values(), default=0):.1f} s); longest pause between deliveries "
        f"{gap:.1f} s, starting {gap_at - stopped_at:+.1f} s from the shutdown; slowest API "
        f"answer {load.slowest:.2f} s"
    )
    return 0 if lost == 0 and statuses == {"delivered": len(ids)} else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=20.0, help="sends a second")
    p.add_argument("--seconds", type=float, default=60.0, help="how long the load runs")
    p.add_argument("--kill-at", type=float, default=20.0, help="when the leader node stops")
    p.add_argument("--drain", type=float, default=180.0, help="seconds to wait for delivery")
    args = p.parse_args()

    if not os.path.exists(RECIPE) or not shutil.which("rabbitmqctl"):
        print(
            f"bench_cluster: cannot start a RabbitMQ cluster: the recipe {RECIPE} or "
            "rabbitmqctl is missing (set SMSGW_RMQ_CLUSTER_RECIPE)",
            file=sys.stderr,
        )
        return 2
    busy = [p for p in PORTS.values() if port_open(p)]
    if busy:
        print(
            f"bench_cluster: ports {busy} already answer: another cluster is running "
            f"(`{RECIPE} down` removes it if it is yours); not touching it",
            file=sys.stderr,
        )
        return 2
    database_url = f"{PG}/smsgw_bench_cluster_{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="smsgw-bench-cluster-"))
    started = time.monotonic()
    try:
        print("starting the 3-node cluster …", flush=True)
        try:
            print(recipe("up").strip())
        except ClusterError as exc:
            print(f"bench_cluster: the RabbitMQ cluster did not start: {exc}", file=sys.stderr)
            return 2
        print(f"cluster up in {time.monotonic() - started:.0f} s", flush=True)
        upgrade(database_url)
        return asyncio.run(pipeline(args, workdir, database_url))
    finally:
        with contextlib.suppress(ClusterError):
            recipe("down")
        with contextlib.suppress(Exception):
            asyncio.run(drop_database(database_url))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
