"""Modem worker benchmark: pool throughput with N simulated modems, and worker overhead per SMS.

Targets (issue [4/10]): with 8 modems at 1 s per send the pool delivers >= 7.5 SMS/s, and the
worker adds <= 5 ms per SMS on top of the modem's own latency.

    .venv/bin/python bench/bench_modem.py [--modems 8] [--jobs 80] [--latency 1.0]

Needs RabbitMQ (SMSGW_AMQP_URL); uses its own namespace and deletes it afterwards. The
simulator runs in a child process so that it does not share the worker's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import REGISTRY

from smsgw_modem import service
from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher, Topology
from smsgw_shared.config import ModemConfig, Settings
from smsgw_shared.messages import SendJob, StatusEvent
from smsgw_shared.testing.plugin import delete_namespace

SIM_CODE = """
import asyncio, sys, logging
from smsgw_modem.sim import Simulator
async def main():
    count, base, control = (int(a) for a in sys.argv[1:4])
    latency = float(sys.argv[4])
    sim = Simulator(count, base, control, send_latency=latency, pty_dir=None)
    for s in sim.servers:
        s.device.state.reports.outcome = "none"
    await sim.start()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def free_base(count: int) -> int:
    """A port with `count` free ports after it."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


async def run_case(modems: int, jobs: int, latency: float, route: str) -> tuple[float, float]:
    """Send `jobs` SMS through `modems` simulated modems; return (seconds, SMS/s)."""
    base = free_base(modems + 1)
    sim = subprocess.Popen(
        [sys.executable, "-c", SIM_CODE, str(modems), str(base + 1), str(base), str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    sim.stdout.readline()
    state_dir = tempfile.mkdtemp(prefix="smsgw-bench-")
    settings = Settings.model_validate(
        {
            "namespace": "bench" + uuid.uuid4().hex[:8],
            "amqp_url": os.environ.get("SMSGW_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            "log_level": "WARNING",
            "environment": "development",  # guest/guest broker credentials
            "workers": {"state_dir": state_dir, "heartbeat_interval": 5.0},
            "modems": [
                ModemConfig(id=f"m{i + 1}", url=f"socket://127.0.0.1:{base + 1 + i}")
                for i in range(modems)
            ],
        }
    )
    topology = Topology(settings.namespace, settings.workers.retry_delays)
    amqp = AmqpConnection(settings.amqp_url, topology, name="bench")
    await amqp.connect()
    await amqp.declare(service.queue_specs(topology, settings.modems))
    sent: dict[str, float] = {}
    done = asyncio.Event()
    channel = await amqp.channel(confirms=False)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.events_exchange, "status.#")
    ready: set[str] = set()

    async def on_status(message: AbstractIncomingMessage) -> None:
        event = StatusEvent.from_bytes(message.body)
        if event.state == "sent" and event.message_id:
            sent[event.message_id] = time.monotonic()
            if len(sent) >= jobs:
                done.set()

    await queue.consume(on_status, no_ack=True)
    stop = asyncio.Event()
    worker = asyncio.create_task(service.run(settings, stop, metrics_port=0))
    hb_channel = await amqp.channel(confirms=False)
    hb_queue = await hb_channel.declare_queue(exclusive=True, auto_delete=True)
    await hb_queue.bind(topology.events_exchange, "heartbeat.#")

    async def on_beat(message: AbstractIncomingMessage) -> None:
        if b'"connected":true' in message.body:
            ready.add(message.routing_key or "")

    await hb_queue.consume(on_beat, no_ack=True)
    while len(ready) < modems:
        await asyncio.sleep(0.05)
    publisher = Publisher(amqp)
    items = [
        Outgoing(
            topology.jobs_exchange,
            topology.job_routing_key(route),
            SendJob(
                message_id=f"b{i}", to="+79160001234", text=f"bench {i}", route=route, dlr=False
            ),
        )
        for i in range(jobs)
    ]
    started = time.monotonic()
    await publisher.publish_many(items)
    await asyncio.wait_for(done.wait(), jobs * latency + 60)
    elapsed = max(sent.values()) - started
    stop.set()
    await worker
    await publisher.close()
    await delete_namespace(amqp, settings)
    await amqp.close()
    sim.terminate()
    sim.wait()
    return elapsed, jobs / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modems", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=80)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--overhead-jobs", type=int, default=40)
    parser.add_argument("--overhead-latency", type=float, default=0.2)
    args = parser.parse_args()

    elapsed, rate = await run_case(args.modems, args.jobs, args.latency, "modem:*")
    ideal = args.modems / args.latency
    print(
        f"pool: {args.jobs} SMS via {args.modems} modems at {args.latency:g} s/send: "
        f"{elapsed:.2f} s, {rate:.2f} SMS/s (modem limit {ideal:.2f} SMS/s, "
        f"{100 * rate / ideal:.0f}%; target >= 7.5 SMS/s with 8 modems)"
    )
    n, lat = args.overhead_jobs, args.overhead_latency
    before = _send_seconds()
    elapsed, _ = await run_case(1, n, lat, "modem:m1")
    after = _send_seconds()
    per_sms = elapsed / n
    modem_ms = (after[0] - before[0]) / max(after[1] - before[1], 1) * 1000
    print(
        f"overhead: {n} SMS one after another on one modem at {lat:g} s/send: "
        f"{per_sms * 1000:.1f} ms per SMS; modem time (AT+CMGS to +CMGS: <mr>) "
        f"{modem_ms:.1f} ms; worker overhead on top of the modem "
        f"{per_sms * 1000 - modem_ms:.1f} ms/SMS (target <= 5 ms), on top of the configured "
        f"latency {(per_sms - lat) * 1000:.1f} ms/SMS"
    )


def _send_seconds() -> tuple[float, float]:
    """Sum and count of smsgw_modem_send_seconds for m1 (modem time per job)."""
    total = REGISTRY.get_sample_value("smsgw_modem_send_seconds_sum", {"modem": "m1"}) or 0.0
    count = REGISTRY.get_sample_value("smsgw_modem_send_seconds_count", {"modem": "m1"}) or 0.0
    return total, count


if __name__ == "__main__":
    asyncio.run(main())
