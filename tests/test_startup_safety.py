"""Every service runs the production check at start-up, and serves its health and metrics
on the configured address only."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import pytest

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings
from smsgw_shared.safety import UnsafeConfiguration
from smsgw_shared.testing import free_port, wait_for

Runner = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


def _inbound(settings: Settings, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    from smsgw_inbound.service import run

    return run(settings, stop)


def _modem(settings: Settings, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    from smsgw_modem.service import run

    return run(settings, stop)


def _smpp(settings: Settings, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    from smsgw_smpp.service import run

    return run(settings, stop)


SERVICES: dict[str, Runner] = {"inbound": _inbound, "modem-worker": _modem, "smpp-worker": _smpp}


def unsafe(settings: Settings) -> Settings:
    """The test settings (guest/guest, no database password, private webhooks) in
    production, with a short bootstrap key."""
    return settings.model_copy(
        update={
            "environment": "production",
            "bootstrap_api_key": "short",
            "api": settings.api.model_copy(update={"host": "0.0.0.0"}),
        }
    )


@pytest.mark.parametrize("name", list(SERVICES))
async def test_services_refuse_to_start_with_unsafe_production_settings(
    name: str, db_settings: Settings
) -> None:
    stop = asyncio.Event()
    stop.set()  # a service that started anyway returns at once instead of hanging the test
    with pytest.raises(UnsafeConfiguration) as info:
        await asyncio.wait_for(SERVICES[name](unsafe(db_settings), stop), 30)
    msg = str(info.value)
    for key in ("amqp_url", "database_url", "bootstrap_api_key", "webhooks.allow_private"):
        assert key in msg, (name, msg)


def test_api_refuses_to_start_with_unsafe_production_settings(db_settings: Settings) -> None:
    from smsgw_api.app import create_app

    with pytest.raises(UnsafeConfiguration, match="amqp_url"):
        create_app(unsafe(db_settings))


def with_metrics_host(settings: Settings, host: str, port: int) -> Settings:
    return settings.model_copy(
        update={
            "inbound": settings.inbound.model_copy(
                update={"metrics_host": host, "metrics_port": port}
            ),
            "workers": settings.workers.model_copy(
                update={
                    "metrics_host": host,
                    "modem_metrics_port": port,
                    "smpp_metrics_port": port,
                }
            ),
        }
    )


@contextlib.asynccontextmanager
async def running(runner: Runner, settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(runner(settings, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def refuses_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.parametrize("name", list(SERVICES))
async def test_health_and_metrics_bind_the_configured_address(
    name: str, db_settings: Settings, amqp: AmqpConnection
) -> None:
    # `amqp`: its teardown deletes the queues the service declares in this namespace.
    # 127.0.0.2 is loopback too (all of 127/8 is), but a different address than 127.0.0.1:
    # a server on 0.0.0.0 would answer on both.
    port = free_port()
    settings = with_metrics_host(db_settings, "127.0.0.2", port)
    async with running(SERVICES[name], settings), aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            try:
                async with http.get(f"http://127.0.0.2:{port}/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await wait_for(healthy, timeout=20)
        assert refuses_connections("127.0.0.1", port), f"{name} listens beyond 127.0.0.2"


def test_metrics_host_defaults_to_loopback() -> None:
    defaults = Settings.model_validate({})
    assert defaults.inbound.metrics_host == "127.0.0.1"
    assert defaults.workers.metrics_host == "127.0.0.1"
