"""`smsgw dev`: every service and simulator as child processes, in the foreground.

Checks RabbitMQ and PostgreSQL first (saying how to start the one that is down), migrates,
starts the simulators, workers, inbound and API, waits until the API is ready, prints how to
send a first SMS, and stops everything cleanly on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlparse

from smsgw_shared.config import Settings

READY_TIMEOUT_S = 60


def _reachable(url: str, default_port: int) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or default_port), 3):
            return True
    except OSError:
        return False


def check_dependencies(settings: Settings) -> list[str]:
    """Human messages for each unreachable dependency."""
    problems = []
    brokers = [u.strip() for u in settings.amqp_url.split(",") if u.strip()]
    if not any(_reachable(u, 5672) for u in brokers):
        where = ", ".join(f"{urlparse(u).hostname}:{urlparse(u).port or 5672}" for u in brokers)
        problems.append(
            f"RabbitMQ is not reachable at {where}. Start it with "
            "`rabbitmq-server -detached` (or `docker compose up -d rabbitmq`), "
            "or point SMSGW_AMQP_URL at yours."
        )
    if not _reachable(settings.database_url, 5432):
        problems.append(
            f"PostgreSQL is not reachable at {urlparse(settings.database_url).hostname}:"
            f"{urlparse(settings.database_url).port or 5432}. Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "(or `docker compose up -d postgres`), or point SMSGW_DATABASE_URL at yours."
        )
    return problems


def planned(settings: Settings) -> list[tuple[str, list[str]]]:
    """(name, smsgw arguments) of each process to start, simulators first."""
    procs: list[tuple[str, list[str]]] = []
    if settings.simulators.smsc:
        procs.append(("sim-smsc", ["sim", "smsc"]))
    if settings.simulators.modems:
        procs.append(("sim-modem", ["sim", "modem", "--count", str(settings.simulators.modems)]))
    procs.append(("inbound", ["inbound"]))
    if settings.modems:
        procs.append(("modem-worker", ["modem-worker"]))
    if settings.smpp.binds:
        procs.append(("smpp-worker", ["smpp-worker"]))
    procs.append(("api", ["api"]))
    return procs


def _wait_ready(url: str, procs: dict[str, subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                print(f"smsgw dev: {name} exited with code {p.returncode}", file=sys.stderr)
                return False
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _banner(settings: Settings, base: str) -> str:
    key = settings.bootstrap_api_key or "<your key>"
    to = "+79160001234"
    body = json.dumps({"to": to, "text": "Hello from smsgw!"}, ensure_ascii=False)
    lines = [
        "",
        "smsgw is running.",
        f"  API:        {base}   (docs: {base}/docs)",
        f"  API key:    {key}",
    ]
    if settings.simulators.modems:
        lines.append(
            f"  modems:     {settings.simulators.modems} simulated, control "
            f"http://127.0.0.1:{settings.simulators.modem_control_port}"
        )
    if settings.simulators.smsc:
        lines.append(
            f"  SMSC:       127.0.0.1:{settings.simulators.smsc_port}, control "
            f"http://127.0.0.1:{settings.simulators.smsc_control_port}"
        )
    lines += [
        "",
        "Send a first SMS:",
        f"  curl -s -X POST {base}/v1/messages \\",
        f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\",
        f"    -d '{body}'",
        "",
        "Then look at it (use the id from the answer):",
        f"  curl -s -H 'Authorization: Bearer {key}' {base}/v1/messages/<id>",
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    # Stop the API first (no new work), then workers, then simulators.
    for _name, p in reversed(list(procs.items())):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for _name, p in procs.items():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            p.wait(remaining)
        except subprocess.TimeoutExpired:
            p.kill()


def run_dev(settings: Settings, args: argparse.Namespace) -> int:
    """Run everything until Ctrl-C or a child dies; returns the exit code."""
    problems = check_dependencies(settings)
    if problems:
        for msg in problems:
            print(f"smsgw dev: {msg}", file=sys.stderr)
        return 1
    if not args.no_migrate:
        from smsgw_shared.store.migrate import upgrade

        upgrade(settings.database_url)
    env = dict(os.environ)
    if args.config:
        env["SMSGW_CONFIG"] = args.config
    procs: dict[str, subprocess.Popen[bytes]] = {}
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for name, argv in planned(settings):
            procs[name] = subprocess.Popen([sys.executable, "-m", "smsgw_cli.main", *argv], env=env)
            if name.startswith("sim-"):
                time.sleep(0.5)  # let the simulators listen before the workers connect
        base = f"http://{settings.api.host}:{settings.api.port}"
        if not _wait_ready(base, procs):
            print("smsgw dev: the API did not become ready; stopping", file=sys.stderr)
            return 1
        print(_banner(settings, base), flush=True)
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"smsgw dev: {name} exited ({p.returncode}); stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nsmsgw dev: stopping…", file=sys.stderr)
        return 0
    finally:
        _stop_all(procs)
