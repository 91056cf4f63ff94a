"""What a job queue's durability costs the broker (a part: RabbitMQ alone, no gateway).

    .venv/bin/python bench/bench_queues.py [-n 20000] [--rounds 2]

Issue 20 asks what durability each queue really needs, measured against the alternatives.
smsgw's job and event queues are quorum queues: a message is confirmed only once a majority
of the cluster's nodes has it on disk, so losing a node loses nothing (`bench_cluster.py`
shows it). The alternatives on RabbitMQ 3.x are classic durable queues (version 1, or the
newer version 2 store), whose messages live on one node only: a node lost is every message
on it lost, or unavailable until the disk comes back.

For each kind this publishes N messages of 400 bytes the way the API publishes jobs
(persistent, mandatory, with publisher confirms, `Publisher.publish_many` in chunks of 200)
while one consumer takes them the way a worker does (`Consumer`, prefetch 200, coalesced
`multiple` acks), and prints RabbitMQ's CPU per message (every `beam.smp` process on the
machine: keep the machine otherwise quiet), the benchmark's own CPU per message (the
publisher's and the consumer's Python in this one process, on uvloop as in the workers) and
the rate. Kinds alternate, `--rounds` times.

`--pack K` measures the one lever the design rules out (DESIGN.md: one send job per
recipient): K jobs carried by one AMQP message (`JobPack`), acknowledged together. Figures
stay per job, so the two runs compare directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_e2e import _cpu_s, _pids_named  # noqa: E402

from smsgw_shared.amqp import (  # noqa: E402
    AmqpConnection,
    Consumer,
    DeliveryInfo,
    Outgoing,
    Publisher,
    Topology,
)
from smsgw_shared.messages import SendJob  # noqa: E402
from smsgw_shared.messages.base import Payload  # noqa: E402

AMQP = os.environ.get("SMSGW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BROKER = ("beam.smp", "erl_child_setup", "inet_gethost")
KINDS: dict[str, dict[str, object]] = {
    "quorum": {"x-queue-type": "quorum"},
    "classic v2": {"x-queue-type": "classic", "x-queue-version": 2},
    "classic v1": {"x-queue-type": "classic", "x-queue-version": 1},
}
CHUNK = 200


class JobPack(Payload):
    """K send jobs in one queue body (`--pack`; an experiment, not a payload smsgw uses)."""

    jobs: list[SendJob]


def broker_cpu() -> float:
    return sum(_cpu_s(p) for p in _pids_named(*BROKER))


def job_body(i: int) -> bytes:
    """A send job as the API writes it (about 400 bytes)."""
    return SendJob(
        job_id=str(uuid.uuid4()),
        message_id=str(uuid.uuid4()),
        to=f"+7916{i:07d}",
        text="Bench queue durability " + "x" * 17,
        route="smpp:b1",
        sender="Bench",
    ).to_bytes()


async def one(amqp: AmqpConnection, kind: str, n: int, pack: int = 1) -> dict[str, object]:
    queue = f"{amqp.topology.ns}.bench.{kind.replace(' ', '')}.{uuid.uuid4().hex[:6]}"
    ch = await amqp.channel(confirms=False)
    await ch.declare_queue(queue, durable=True, arguments=KINDS[kind])
    jobs = [job_body(i) for i in range(n)]
    if pack > 1:
        bodies = [
            JobPack(jobs=[SendJob.from_bytes(b) for b in jobs[k : k + pack]]).to_bytes()
            for k in range(0, n, pack)
        ]
    else:
        bodies = jobs
    got = 0
    done = asyncio.Event()

    async def handler(job: SendJob | JobPack, _info: DeliveryInfo) -> None:
        nonlocal got
        got += len(job.jobs) if isinstance(job, JobPack) else 1
        if got >= n:
            done.set()

    model: type[SendJob] | type[JobPack] = JobPack if pack > 1 else SendJob
    consumer = Consumer(amqp, queue, model, handler, prefetch=max(1, CHUNK // pack))
    publisher = Publisher(amqp)
    try:
        await consumer.start()
        c0, t0, p0 = broker_cpu(), time.perf_counter(), time.process_time()
        for k in range(0, len(bodies), max(1, CHUNK // pack)):
            items = [Outgoing("", queue, b) for b in bodies[k : k + max(1, CHUNK // pack)]]
            failed = [e for e in await publisher.publish_many(items) if e is not None]
            if failed:
                raise RuntimeError(f"{kind}: {len(failed)} publishes failed: {failed[0]!r}")
        await asyncio.wait_for(done.wait(), 300)
        await consumer.stop()  # every ack sent and answered
        took, cpu = time.perf_counter() - t0, broker_cpu() - c0
        own = time.process_time() - p0
    finally:
        await consumer.stop()
        await publisher.close()
        await ch.queue_delete(queue)
        await ch.close()
    return {
        "queue": kind,
        "n": n,
        "jobs_per_message": pack,
        "msgs_per_s": round(n / took),
        "rabbitmq_cpu_us_per_msg": round(1e6 * cpu / n),
        "client_cpu_us_per_msg": round(1e6 * own / n),
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=20000, help="messages per kind and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pack", type=int, default=1, help="jobs per AMQP message (the design says 1)")
    ap.add_argument("--kind", action="append", choices=list(KINDS), help="default: all")
    args = ap.parse_args()
    kinds = args.kind or list(KINDS)
    topo = Topology("benchq" + uuid.uuid4().hex[:8], [1.0])
    amqp = AmqpConnection(AMQP, topo, name="bench-queues")
    await amqp.connect()
    results: dict[str, list[int]] = {k: [] for k in kinds}
    try:
        for _ in range(args.rounds):
            for kind in kinds:
                r = await one(amqp, kind, args.n, args.pack)
                results[kind].append(int(str(r["rabbitmq_cpu_us_per_msg"])))
                print(json.dumps(r), flush=True)
    finally:
        await amqp.close()
    print(
        f"rabbitmq CPU µs per job, {args.pack} a message (publish confirmed, consume, ack; "
        "a part benchmark): " + ", ".join(f"{k} {min(v)}–{max(v)}" for k, v in results.items())
    )
    return 0


if __name__ == "__main__":
    import uvloop  # as the workers run (`run_service(..., uvloop=True)`)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        sys.exit(runner.run(main()))
