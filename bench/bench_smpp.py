"""SMPP benchmark: one bind to the SMSC simulator (in its own process), window 64.

    .venv/bin/python bench/bench_smpp.py [-n 20000] [--window 64] [--e2e 5000]

Prints:
1. bind:      submit_sm/s through one `SmppBind` (window, rate limiter, response matching)
              and the worker process's CPU seconds;
2. simulator: its own maximum rate (a raw client pipelining 1,000 outstanding submit_sm)
              and its CPU seconds;
3. e2e (with --e2e N): jobs/s through the whole worker: RabbitMQ queue → submit_sm →
              `sent` event confirmed → ack (needs RabbitMQ; limited by the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "services/smpp-worker"), str(ROOT / "shared")]

from smsgw_shared.config import Settings, SmppBindConfig  # noqa: E402
from smsgw_smpp import pdu as sp  # noqa: E402
from smsgw_smpp.bind import SmppBind  # noqa: E402
from smsgw_smpp.connection import SmppConnection  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_sim(port: int, control: int, ready: mp.Event) -> None:  # type: ignore[valid-type]
    from smsgw_smpp.sim import SimConfig, start_simulator

    async def main() -> None:
        sim = await start_simulator(SimConfig(dlr_delay=0.5), "127.0.0.1", port, control)
        ready.set()
        await asyncio.Event().wait()
        await sim.stop()

    asyncio.run(main())


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _noop(pdu: sp.Pdu) -> int:
    return 0


def _fields(i: int) -> dict[str, sp.FieldValue | str]:
    return {
        "source_addr_ton": 5,
        "source_addr": "Bench",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": f"7916{i:07d}",
        "short_message": b"Benchmark message number %d" % i,
    }


async def bench_bind(port: int, n: int, window: int) -> tuple[float, float]:
    """submit_sm/s and CPU seconds through one SmppBind."""
    bind = SmppBind(SmppBindConfig(id="bench", port=port, window=window), _noop)
    bind.start()
    assert await bind.wait_bound(10), "simulator not reachable"
    next_i = 0

    async def lane() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            resp = await bind.submit(_fields(i))
            assert resp.status == 0, resp

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(window)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await bind.stop(2)
    return n / wall, cpu


async def bench_simulator(port: int, n: int, sim_pid: int) -> tuple[float, float]:
    """The simulator's own rate: 1,000 submit_sm outstanding from a bare session."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: SmppConnection("raw", _noop), "127.0.0.1", port)
    assert (
        await conn.request(sp.BIND_TRANSMITTER, {"system_id": "smsgw", "password": "secret"})
    ).status == 0
    outstanding = asyncio.Semaphore(1000)
    futs = []
    cpu0, t0 = _cpu(sim_pid), time.perf_counter()
    for i in range(n):
        await outstanding.acquire()
        fut = conn.request(sp.SUBMIT_SM, _fields(i))
        fut.add_done_callback(lambda _: outstanding.release())
        futs.append(fut)
    await asyncio.gather(*futs)
    wall = time.perf_counter() - t0
    conn.close()
    return n / wall, _cpu(sim_pid) - cpu0


async def bench_e2e(port: int, n: int, window: int, amqp_url: str) -> tuple[float, float]:
    """Jobs/s through the whole worker (RabbitMQ in and out)."""
    from aio_pika.abc import AbstractIncomingMessage

    from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher, Topology
    from smsgw_shared.amqp.packing import PACKED
    from smsgw_shared.messages import SendJob
    from smsgw_smpp.service import SmppService

    ns = "bench" + uuid.uuid4().hex[:8]
    settings = Settings.model_validate(
        {
            "namespace": ns,
            "amqp_url": amqp_url,
            "environment": "development",  # guest/guest broker credentials
            "smpp": {"binds": [{"id": "b1", "port": port, "window": window}]},
        }
    )
    service = SmppService(settings, metrics_port=0)
    topo = Topology(ns, settings.workers.retry_delays)
    amqp = AmqpConnection(amqp_url, topo, name="bench")
    await amqp.connect()
    await amqp.declare(service.queue_specs())
    ch = await amqp.channel(confirms=False)
    events = await ch.declare_queue(exclusive=True, auto_delete=True)
    await events.bind(topo.events_exchange, "status.sent")
    pub = Publisher(amqp)
    jobs = [
        Outgoing(
            topo.jobs_exchange,
            topo.job_routing_key("smpp:b1"),
            SendJob(
                message_id=str(i), to=f"+7916{i:07d}", text=f"e2e {i}", route="smpp:b1", dlr=False
            ),
        )
        for i in range(n)
    ]
    for k in range(0, n, 500):
        errors = await pub.publish_many(jobs[k : k + 500])
        assert not any(errors), errors
    seen = 0
    done = asyncio.Event()

    async def on_sent(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        seen += int((message.headers or {}).get(PACKED, 1))  # type: ignore[call-overload]
        if seen >= n:
            done.set()

    await events.consume(on_sent, no_ack=True)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await service.start()
    await asyncio.wait_for(done.wait(), 600)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await service.stop()
    chd = await amqp.connection.channel()
    for spec in service.queue_specs():
        await chd.queue_delete(spec.name)
    for name, _ in topo.exchanges():
        await chd.exchange_delete(name)
    await pub.close()
    await amqp.close()
    return n / wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--e2e", type=int, default=0, metavar="N", help="also N jobs end to end")
    parser.add_argument(
        "--amqp-url", default=os.environ.get("SMSGW_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    args = parser.parse_args()

    port, control = _free_port(), _free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    sim = ctx.Process(target=_run_sim, args=(port, control, ready), daemon=True)
    sim.start()
    if not ready.wait(20):
        raise SystemExit("simulator did not start")
    try:
        rate, cpu = asyncio.run(bench_bind(port, args.n, args.window))
        print(
            f"bind:      {args.n} submit_sm, window {args.window}: {rate:,.0f} submit_sm/s, "
            f"worker CPU {cpu:.2f} s ({cpu / args.n * 1e6:.0f} µs/submit)"
        )
        sim_rate, sim_cpu = asyncio.run(bench_simulator(port, args.n, sim.pid or 0))
        print(
            f"simulator: {args.n} submit_sm, 1000 outstanding: {sim_rate:,.0f} submit_sm/s, "
            f"simulator CPU {sim_cpu:.2f} s"
        )
        if args.e2e:
            e2e_rate, e2e_cpu = asyncio.run(bench_e2e(port, args.e2e, args.window, args.amqp_url))
            print(
                f"e2e:       {args.e2e} jobs queue→submit→sent event→ack: {e2e_rate:,.0f} jobs/s, "
                f"worker CPU {e2e_cpu:.2f} s"
            )
        print(
            json.dumps(
                {
                    "bind_rate": round(rate),
                    "worker_cpu_s": round(cpu, 2),
                    "sim_rate": round(sim_rate),
                    "sim_cpu_s": round(sim_cpu, 2),
                }
            )
        )
    finally:
        sim.terminate()
        sim.join(5)


if __name__ == "__main__":
    main()
