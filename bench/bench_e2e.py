"""The whole loop (issue 20): HTTP send → RabbitMQ → SMPP worker → SMSC → receipt → inbound →
`delivered` in PostgreSQL, on one machine, everything counted.

    .venv/bin/python bench/bench_e2e.py                       # the three variants below
    .venv/bin/python bench/bench_e2e.py --variant single -n 5000 -c 50
    .venv/bin/python bench/bench_e2e.py --smsc 127.0.0.1:2875 --sim-ctl http://127.0.0.1:3875

Starts api, smpp-worker and inbound as processes (`smsgw …`, log level WARNING) on a fresh
database and RabbitMQ namespace, bound to an SMSC simulator that answers every submit_sm and
sends a receipt: its own (`smsgw sim smsc`), or with `--smsc HOST:PORT --sim-ctl URL` one
already running, such as the node-smpp simulator of `../shared/anchors` that Kannel and
Jasmin are measured against (`./sim-up.sh --dlr`).

Variants (`--variant`, repeatable; default all three):
- `single`: N single-recipient `POST /v1/messages` (JSON, 40-character text, receipts
  requested) over keep-alive HTTP at concurrency C, after a warm-up;
- `long`: the same with 2-part texts (200 GSM-7 characters);
- `batch`: N recipients in `POST /v1/messages` of 1,000 recipients each, 2 at a time.

For each it waits until every message is `delivered` in the store and prints one JSON line:
accepted/s (HTTP), at-SMSC msgs/s (the simulator's submit_sm count), full-loop msgs/s (first
request sent → last message `delivered` in the store), API latency percentiles, CPU µs per
message for each service, the simulator, the load generator, PostgreSQL and RabbitMQ (every
process of theirs on the machine: keep the machine otherwise quiet), and each service's
peak RSS, the store's transactions and row writes per message (in all and per
table), and the host's speed before and after (`host_ms`: CPU milliseconds of
`sum(range(10**6))`, larger is slower). The database and namespace are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smsgw_shared.testing import free_port  # noqa: E402
from tests.e2e.stack import Stack, scratch  # noqa: E402

AMQP = os.environ.get("SMSGW_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get("SMSGW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
SERVICES = ("api", "smpp-worker", "inbound")
TICK = os.sysconf("SC_CLK_TCK")
TEXT = "Your code is 123456, valid for 5 minutes"  # 40 characters
LONG = ("The quick brown fox jumps over the lazy dog 0123456789. " * 4)[:200]


# ---------------------------------------------------------------- processes
def _cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / TICK


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids_named(*names: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _comm(int(p)) in names]


def _per_msg(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    """The counters that moved, per message."""
    return {
        k: round((v - before.get(k, 0)) / n, 2) for k, v in after.items() if v != before.get(k, 0)
    }


def _peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f) - f[3] - f[4]) / TICK


class CpuMeter:
    """CPU seconds of process groups between two snapshots."""

    def __init__(self, groups: dict[str, list[int] | tuple[str, ...]]) -> None:
        self.groups = groups

    def snap(self) -> dict[str, float]:
        out = {}
        for name, who in self.groups.items():
            pids = _pids_named(*who) if isinstance(who, tuple) else who
            out[name] = sum(_cpu_s(p) for p in pids)
        out["load generator"] = _self_cpu()
        out["machine"] = _machine_busy()
        return out


# ---------------------------------------------------------------- load
class HttpConn:
    """One keep-alive HTTP/1.1 connection; stdlib only, so the load generator stays cheap."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def host_ms() -> float:
    """This host's speed just now: the median CPU milliseconds of `sum(range(10**6))` over
    five runs (12.5-22 ms across sessions on these shared machines). Figures of runs whose
    hosts differ this much are not comparable; ratios within one run are."""
    times = []
    for _ in range(5):
        t = time.process_time()
        sum(range(10**6))
        times.append(time.process_time() - t)
    return round(sorted(times)[2] * 1000, 1)


def _pct(xs: list[float], p: float) -> float:
    return round(xs[min(len(xs) - 1, int(len(xs) * p))] * 1000, 1) if xs else float("nan")


async def blast(
    api: str, key: str, bodies: list[bytes], conc: int
) -> tuple[float, list[float], dict[str, int]]:
    """Send every body (concurrency `conc`); seconds taken, latencies, errors by status."""
    u = urlparse(api)
    conns = [HttpConn(u.hostname or "127.0.0.1", u.port or 80, key) for _ in range(conc)]
    lat: list[float] = []
    errors: dict[str, int] = {}
    it = iter(bodies)

    async def worker(c: HttpConn) -> None:
        for body in it:
            t = time.perf_counter()
            try:
                status, answer = await c.post(body)
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                c.close()
                c.writer = None
                continue
            lat.append(time.perf_counter() - t)
            if status != 202:
                errors[str(status)] = errors.get(str(status), 0) + 1
                if len(errors) == 1 and errors[str(status)] == 1:
                    print(f"refused: {status} {answer[:300]!r}", file=sys.stderr)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    took = time.perf_counter() - t0
    for c in conns:
        c.close()
    lat.sort()
    return took, lat, errors


def bodies(variant: str, n: int, base: int, tag: str) -> list[bytes]:
    def to(i: int) -> str:
        return f"+7916{(base + i) % 10_000_000:07d}"

    if variant == "batch":
        out = []
        for start in range(0, n, 1000):
            rcpts = [to(i) for i in range(start, min(n, start + 1000))]
            out.append(json.dumps({"to": rcpts, "text": TEXT, "from": "Bench"}).encode())
        return out
    text = LONG if variant == "long" else TEXT
    return [
        json.dumps(
            {"to": to(i), "text": f"{tag}{i:06d} {text}"[: len(text)], "from": "Bench"}
        ).encode()
        for i in range(n)
    ]


# ---------------------------------------------------------------- the run
class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, database_url: str) -> None:
        self.args = args
        self.database_url = database_url
        self.stack = Stack(
            workdir=workdir,
            namespace="bench" + uuid.uuid4().hex[:8],
            database_url=database_url,
            amqp_url=AMQP,
            api_key="sgw_bench_" + uuid.uuid4().hex,
        )
        self.sim_ctl = args.sim_ctl
        self.sent_base = 0
        self.next_to = 0

    def write_config(self) -> None:
        s = self.stack
        for name in ("api", "inbound", "smpp_metrics", "modem_metrics", "smsc", "smsc_control"):
            s.ports.setdefault(name, free_port())
        if self.args.smsc:
            host, _, port = self.args.smsc.rpartition(":")
        else:
            host, port = "127.0.0.1", str(s.ports["smsc"])
            self.sim_ctl = f"http://127.0.0.1:{s.ports['smsc_control']}"
        lg = self.args.inbound_linger
        linger = "" if lg is None else f"batch_linger = {lg}"
        s.config = s.workdir / "smsgw.toml"
        s.config.write_text(f"""
namespace = "{s.namespace}"
amqp_url = "{s.amqp_url}"
database_url = "{s.database_url}"
log_format = "json"
log_level = "WARNING"
environment = "development"
[api]
port = {s.ports["api"]}
[workers]
smpp_metrics_port = {s.ports["smpp_metrics"]}
modem_metrics_port = {s.ports["modem_metrics"]}
state_dir = "{s.workdir / "state"}"
[inbound]
metrics_port = {s.ports["inbound"]}
{linger}
[simulators]
smsc = true
modems = 0
smsc_port = {s.ports["smsc"]}
smsc_control_port = {s.ports["smsc_control"]}
dlr_delay = 0.0
[[smpp.binds]]
id = "b1"
host = "{host}"
port = {port}
window = {self.args.window}
[routing]
default = "smpp:b1"
""")

    async def sim_submits(self, c: httpx.AsyncClient) -> int:
        return int((await c.get(f"{self.sim_ctl}/stats")).json()["submits"])

    async def delivered(self, db: asyncpg.Connection) -> int:
        return int(await db.fetchval("SELECT count(*) FROM messages WHERE status = 'delivered'"))

    async def batch_sums(self, c: httpx.AsyncClient) -> tuple[float, float]:
        """The inbound projection's batch-size histogram: (sum, count)."""
        text = (await c.get(f"http://127.0.0.1:{self.stack.ports['inbound']}/metrics")).text
        got = {"sum": 0.0, "count": 0.0}
        for line in text.splitlines():
            for k in got:
                if line.startswith(f"smsgw_inbound_batch_size_{k} "):
                    got[k] = float(line.split()[1])
        return got["sum"], got["count"]

    async def db_counts(self, db: asyncpg.Connection) -> dict[str, int]:
        """This database's transactions and row writes so far (pg_stat_database)."""
        row = await db.fetchrow(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        return dict(row) if row else {}

    async def table_counts(self, db: asyncpg.Connection) -> dict[str, dict[str, int]]:
        """Row writes so far per table (pg_stat_user_tables): which tables one SMS costs,
        and how many of its updates were HOT (no index entries written)."""
        rows = await db.fetch(
            "SELECT relname, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_hot_upd AS hot,"
            " n_tup_del AS del FROM pg_stat_user_tables"
        )
        return {r["relname"]: {k: r[k] for k in ("ins", "upd", "hot", "del")} for r in rows}

    async def run_variant(
        self, variant: str, n: int, db: asyncpg.Connection, sim: httpx.AsyncClient, cpu: CpuMeter
    ) -> dict[str, object]:
        parts = 2 if variant == "long" else 1
        conc = 2 if variant == "batch" else self.args.c
        work = bodies(variant, n, self.next_to, uuid.uuid4().hex[:4])
        self.next_to += n
        base_delivered = await self.delivered(db)
        base_submits = await self.sim_submits(sim)
        at_smsc: float | None = None
        b0 = await self.batch_sums(sim)
        d0 = await self.db_counts(db)
        t0_tables = await self.table_counts(db)
        spies = self.profile(variant) if n > self.args.warmup else []
        speed = host_ms()
        c0 = cpu.snap()
        t0 = time.perf_counter()
        send = asyncio.create_task(blast(self.stack.api_url, self.stack.api_key, work, conc))
        done_at = None
        deadline = t0 + self.args.timeout
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
            if at_smsc is None and await self.sim_submits(sim) - base_submits >= n * parts:
                at_smsc = time.perf_counter() - t0
            if send.done() and await self.delivered(db) - base_delivered >= n:
                done_at = time.perf_counter() - t0
                break
        took, lat, errors = await send
        c1 = cpu.snap()
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        got = await self.delivered(db) - base_delivered
        b1 = await self.batch_sums(sim)
        # A busy backend reports its statistics at most once a second, an idle one after
        # 10 s (PostgreSQL 15's PGSTAT_IDLE_INTERVAL): wait that out, or the last second's
        # writes are missing from the counts (the CPU figures were taken above).
        await asyncio.sleep(11)
        d1 = await self.db_counts(db)
        t1_tables = await self.table_counts(db)
        per_msg = {k: round((c1[k] - c0[k]) / n * 1e6) for k in c1 if k != "machine"}
        return {
            "variant": variant,
            "n": n,
            "concurrency": conc,
            "accepted_per_s": round(n / took, 1),
            "at_smsc_per_s": round(n / at_smsc, 1) if at_smsc else None,
            "full_loop_per_s": round(n / done_at, 1) if done_at else None,
            "delivered": got,
            "http_errors": errors,
            "latency_ms": {
                "p50": _pct(lat, 0.5),
                "p90": _pct(lat, 0.9),
                "p99": _pct(lat, 0.99),
                "max": _pct(lat, 1.0),
            },
            "cpu_us_per_msg": per_msg,
            "machine_cpu_us_per_msg": round((c1["machine"] - c0["machine"]) / n * 1e6),
            "host_ms": {"before": speed, "after": host_ms()},
            # per message, this database (the bench's own polling included)
            "db_per_msg": _per_msg(d0, d1, n),
            "db_tables_per_msg": {
                name: _per_msg(t0_tables.get(name, {}), after, n)
                for name, after in sorted(t1_tables.items())
                if after != t0_tables.get(name)
            },
            "inbound_mean_batch": round((b1[0] - b0[0]) / max(1.0, b1[1] - b0[1]), 1),
            "peak_rss_mb": {
                name: round(_peak_rss_mb(p.pid), 1) for name, p in self.stack.procs.items()
            },
        }

    def profile(self, variant: str) -> list[subprocess.Popen[bytes]]:
        """py-spy on every service for this variant (`--profile DIR`): collapsed stacks."""
        if not self.args.profile:
            return []
        out = Path(self.args.profile)
        out.mkdir(parents=True, exist_ok=True)
        return [
            subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "-p",
                    str(p.pid),
                    "-r",
                    "200",
                    "-f",
                    "raw",
                    "--nonblocking",
                    "-o",
                    str(out / f"{variant}-{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, p in self.stack.procs.items()
            if name in SERVICES
        ]

    async def run(self) -> int:
        s = self.stack
        self.write_config()
        if not self.args.smsc:
            s.start("sim-smsc", "sim", "smsc")
        for name in SERVICES:
            s.start(name, name)
        failed = 0
        try:
            await s.wait_http(s.api_url + "/readyz", timeout=120)
            for port in ("inbound", "smpp_metrics"):
                await s.wait_http(f"http://127.0.0.1:{s.ports[port]}/readyz", timeout=120)
            groups: dict[str, list[int] | tuple[str, ...]] = {
                name: [p.pid] for name, p in s.procs.items()
            }
            if self.args.smsc:
                groups["simulator"] = ("node",)
            groups["postgresql"] = ("postgres",)
            groups["rabbitmq"] = ("beam.smp", "erl_child_setup", "inet_gethost")
            cpu = CpuMeter(groups)
            async with httpx.AsyncClient(timeout=10) as sim:
                db = await asyncpg.connect(self.database_url)
                try:
                    await self.run_variant("single", self.args.warmup, db, sim, cpu)
                    # A running gateway's tables have statistics (autovacuum analyses them
                    # within a minute of a change); a fresh database has none, and without
                    # them PostgreSQL plans the projection's lookups by id as scans of the
                    # whole table for as long as the run lasts.
                    await db.execute("ANALYZE")
                    for variant in self.args.variant or ("single", "long", "batch"):
                        n = self.args.n if variant != "long" else max(1, self.args.n // 2)
                        if variant == "batch":
                            n = self.args.n * 2
                        result = await self.run_variant(variant, n, db, sim, cpu)
                        print(json.dumps(result), flush=True)
                        failed += result["delivered"] != n
                finally:
                    await db.close()
        except Exception:
            s.print_logs()
            raise
        finally:
            s.stop_all()
            await s.remove_namespace()
        return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=5000, help="messages per variant (batch: 2×n)")
    ap.add_argument("-c", type=int, default=50, help="HTTP concurrency")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--variant", action="append", choices=["single", "long", "batch"])
    ap.add_argument("--window", type=int, default=64, help="SMPP window of the bind")
    ap.add_argument(
        "--inbound-linger",
        type=float,
        help="inbound.batch_linger in seconds (default: the configuration's, 0.1)",
    )
    ap.add_argument("--smsc", help="HOST:PORT of a running SMSC simulator (default: start ours)")
    ap.add_argument("--sim-ctl", help="its control URL (GET /stats with `submits`)")
    ap.add_argument("--profile", help="directory for py-spy profiles (pip install py-spy)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per variant")
    args = ap.parse_args()
    if args.smsc and not args.sim_ctl:
        ap.error("--smsc needs --sim-ctl")
    with scratch(PG, "bench") as (database_url, workdir):
        return asyncio.run(Bench(args, workdir, database_url).run())


if __name__ == "__main__":
    sys.exit(main())
