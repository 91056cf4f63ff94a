"""The lifecycle plumbing every service shares: SIGTERM → the work in hand finished within
`shutdown_timeout` → one line saying what was left → exit 0 (or exit 1 past the bound);
readiness answers naming each check."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap

import aiohttp

from smsgw_shared.observability import HealthServer, readiness
from smsgw_shared.runtime import ShutdownReport

SERVICE = """
import asyncio, sys
import smsgw_shared.runtime as rt
from smsgw_shared.config import Settings

rt.SHUTDOWN_SLACK = 0.5
settings = Settings(log_format="json", shutdown_timeout=float(sys.argv[1]))

async def main(s, stop):
    print("READY", flush=True)
    await stop.wait()
    await asyncio.sleep(float(sys.argv[2]))  # finishing the work in hand
    return rt.ShutdownReport(in_hand=2, unfinished=int(sys.argv[3]))

rt.run_service("demo", settings, main)
"""


def _run_and_terminate(*argv: str) -> tuple[int, list[dict[str, object]]]:
    """Run a service that reports `argv`, SIGTERM it once up; its exit code and JSON lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SERVICE), *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "READY"
    # READY comes from main, which runs after the signal handlers are installed.
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    lines = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    return p.returncode, lines


def test_sigterm_finishes_then_says_what_was_left_and_exits_0():
    code, lines = _run_and_terminate("5", "0.3", "0")
    assert code == 0, lines
    msgs = [str(ln["msg"]) for ln in lines]
    assert "SIGTERM: stopping; finishing the work in hand (up to 5s)" in msgs
    last = lines[-1]
    assert last["msg"] == "stopped: 0 jobs unfinished (2 in hand at the stop, finished)"
    assert last["in_hand"] == 2 and last["unfinished"] == 0 and last["service"] == "demo"


def test_work_given_back_is_named_in_the_last_line():
    code, lines = _run_and_terminate("5", "0", "1")
    assert code == 0
    assert lines[-1]["msg"] == (
        "stopped with 1 jobs unfinished (2 in hand at the stop); they will be redelivered"
    )
    assert lines[-1]["unfinished"] == 1


def test_a_stop_past_the_bound_ends_the_process_with_exit_1():
    # shutdown_timeout 0.5 + slack 0.5: a stop still running after 1 s is cut short.
    code, lines = _run_and_terminate("0.5", "30", "0")
    assert code == 1
    assert lines[-1]["level"] == "ERROR"
    assert str(lines[-1]["msg"]).startswith("did not stop within 1s")


def test_report_lines():
    assert (
        ShutdownReport(3, 0).line()
        == "stopped: 0 jobs unfinished (3 in hand at the stop, finished)"
    )
    r = ShutdownReport(5, 2, unit="events")
    assert (
        r.line()
        == "stopped with 2 events unfinished (5 in hand at the stop); they will be redelivered"
    )
    assert r.fields() == {"in_hand": 5, "unfinished": 2, "unit": "events"}


async def test_readiness_names_each_check():
    async def ok() -> bool:
        return True

    async def down() -> bool:
        return False

    async def raises() -> bool:
        raise ConnectionError("gone")

    assert await readiness({"broker": ok, "binds": ok}) == {
        "status": "ready",
        "checks": {"broker": "ok", "binds": "ok"},
        "failed": [],
    }
    assert await readiness({"broker": raises, "store": ok, "modems": down}) == {
        "status": "unavailable",
        "checks": {"broker": "failing", "store": "ok", "modems": "failing"},
        "failed": ["broker", "modems"],
    }
    body = await readiness({"broker": ok}, stopping=True)
    assert body["checks"] == {"broker": "ok", "shutdown": "failing"}
    assert body["failed"] == ["shutdown"]


async def test_health_server_readyz_is_503_with_each_check_and_after_stopping():
    bound = asyncio.Event()
    bound.set()

    async def binds() -> bool:
        return bound.is_set()

    async def broker() -> bool:
        return True

    server = HealthServer("127.0.0.1", 0, {"broker": broker, "binds": binds})
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/readyz"
            async with http.get(url) as r:
                assert r.status == 200
                assert (await r.json())["checks"] == {"broker": "ok", "binds": "ok"}
            bound.clear()
            async with http.get(url) as r:
                assert r.status == 503
                assert await r.json() == {
                    "status": "unavailable",
                    "checks": {"broker": "ok", "binds": "failing"},
                    "failed": ["binds"],
                }
            bound.set()
            server.stopping()
            async with http.get(url) as r:
                assert r.status == 503
                assert (await r.json())["failed"] == ["shutdown"]
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200  # alive while it stops
    finally:
        await server.stop()
