"""Start the whole gateway as processes (the `smsgw` command line), as an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from smsgw_shared.amqp import AmqpConnection, Topology
from smsgw_shared.config import load_settings
from smsgw_shared.store.db import drop_database
from smsgw_shared.store.migrate import upgrade
from smsgw_shared.testing import free_port
from smsgw_shared.testing.plugin import delete_namespace


@dataclass
class Stack:
    """Ports, the config file and the child processes of one running gateway."""

    workdir: Path
    namespace: str
    database_url: str
    amqp_url: str
    api_key: str = field(default_factory=lambda: "sgw_e2e_" + uuid.uuid4().hex)
    modems: int = 2
    webhook_retry: str = "[0.3, 0.6]"  # webhooks.retry_schedule
    bind_extra: str = ""  # more keys of the [[smpp.binds]] table
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    config: Path | None = None

    @classmethod
    def in_test(
        cls, workdir: Path, amqp: AmqpConnection, database_url: str, broker_url: str, **kw: Any
    ) -> Self:
        """A stack in the test's namespace (the `amqp` fixture deletes it afterwards)."""
        return cls(
            workdir=workdir,
            namespace=amqp.topology.ns,
            database_url=database_url,
            amqp_url=broker_url,
            **kw,
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def smsc_control(self) -> str:
        return f"http://127.0.0.1:{self.ports['smsc_control']}"

    @property
    def modem_control(self) -> str:
        return f"http://127.0.0.1:{self.ports['modem_control']}"

    def write_config(self, extra: str = "") -> Path:
        for name in (
            "api",
            "smsc",
            "smsc_control",
            "modem_control",
            "inbound",
            "modem_metrics",
            "smpp_metrics",
        ):
            self.ports.setdefault(name, free_port())
        base = self.ports.setdefault(
            "modem_base", _free_block(self.modems, taken=set(self.ports.values()))
        )
        modems = "\n".join(
            f'[[modems]]\nid = "m{i + 1}"\nurl = "socket://127.0.0.1:{base + i}"\n'
            f"command_timeout = 3.0\nsweep_interval = 2.0\n"
            for i in range(self.modems)
        )
        text = f"""
namespace = "{self.namespace}"
amqp_url = "{self.amqp_url}"
database_url = "{self.database_url}"
log_format = "text"
log_level = "INFO"
environment = "development"
[api]
port = {self.ports["api"]}
outbox_interval = 0.2
scheduler_interval = 0.2
[workers]
retry_delays = [0.5, 1.0, 2.0]
max_attempts = 4
heartbeat_interval = 0.5
modem_metrics_port = {self.ports["modem_metrics"]}
smpp_metrics_port = {self.ports["smpp_metrics"]}
state_dir = "{self.workdir / "state"}"
[inbound]
metrics_port = {self.ports["inbound"]}
reassembly_timeout = 30.0
[webhooks]
allow_private = true
retry_schedule = {self.webhook_retry}
[simulators]
smsc = true
modems = {self.modems}
smsc_port = {self.ports["smsc"]}
smsc_control_port = {self.ports["smsc_control"]}
modem_base_port = {base}
modem_control_port = {self.ports["modem_control"]}
modem_send_latency = 0.0
dlr_delay = 0.2
{modems}
[[smpp.binds]]
id = "b1"
port = {self.ports["smsc"]}
{self.bind_extra}
[routing]
default = "modem:*"
[[routing.rules]]
prefix = "+7916"
to = "smpp:b1"
{extra}
"""
        self.config = self.workdir / "smsgw.toml"
        self.config.write_text(text)
        return self.config

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
        env["SMSGW_CONFIG"] = str(self.config)
        env["SMSGW_BOOTSTRAP_API_KEY"] = self.api_key
        return env

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start one `smsgw` subcommand; its output goes to workdir/<name>.log."""
        log = (self.workdir / f"{name}.log").open("ab")
        p = subprocess.Popen(
            [sys.executable, "-m", "smsgw_cli.main", *argv],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = p
        return p

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        p = self.procs.pop(name)
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        return p.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def print_logs(self) -> None:
        """The tail of every process's log, on stderr (after a failure)."""
        for name in list(self.procs):
            print(f"--- {name}.log (tail)\n{self.logs(name)[-1500:]}", file=sys.stderr)

    async def remove_namespace(self) -> None:
        """Delete this gateway's queues and exchanges (best effort: the broker may be gone)."""
        settings = load_settings(self.config)
        conn = AmqpConnection(
            self.amqp_url, Topology(self.namespace, settings.workers.retry_delays)
        )
        with contextlib.suppress(Exception):
            await conn.connect()
            await delete_namespace(conn, settings)
            await conn.close()

    def logs(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as c:
            while time.monotonic() < deadline:
                try:
                    r = await c.get(url, timeout=2)
                    if r.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                for name, p in self.procs.items():
                    if p.poll() is not None:
                        raise AssertionError(f"{name} exited:\n{self.logs(name)}")
                await asyncio.sleep(0.2)
        raise AssertionError(f"{url} not ready within {timeout}s")


@contextlib.contextmanager
def scratch(pg_url: str, prefix: str) -> Iterator[tuple[str, Path]]:
    """A migrated throw-away database on the PostgreSQL server at `pg_url` and a work
    directory, both removed afterwards (for the benchmarks that run a whole gateway)."""
    database_url = f"{pg_url}/smsgw_{prefix}_{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix=f"smsgw-{prefix}-"))
    try:
        upgrade(database_url)
        yield database_url, workdir
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(drop_database(database_url))
        shutil.rmtree(workdir, ignore_errors=True)


async def wait_routes_connected(client: httpx.AsyncClient, timeout: float = 120) -> None:
    """Poll `GET /v1/routes` (with `client`'s key) until every modem and bind is connected."""
    deadline = time.monotonic() + timeout
    while True:
        body = (await client.get("/v1/routes")).json()
        if all(x["connected"] for x in body["modems"] + body["binds"]):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"routes not connected: {body}")
        await asyncio.sleep(0.2)


def _free_block(n: int, taken: Collection[int] = ()) -> int:
    """A base port with n consecutive free ports, none of them in `taken` (ports handed out
    already but not yet bound: free now, they would collide once their process starts)."""
    for _ in range(50):
        base = free_port()
        if base + n >= 65535 or any(p in taken for p in range(base, base + n)):
            continue
        ok = True
        import socket

        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no block of free ports")
