"""A small HTTP server for services that are not the API: /healthz, /readyz, /metrics.

`/healthz` says the process is alive; `/readyz` runs the service's readiness checks
(broker and store reachable, devices connected…) and answers 503 naming what failed:

    {"status": "unavailable", "checks": {"broker": "ok", "binds": "failing"},
     "failed": ["binds"]}

Once the service is stopping (`stopping()`), `/readyz` answers 503 with the check
`shutdown` failing, so a load balancer or Kubernetes stops sending it work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]


async def readiness(checks: dict[str, ReadyCheck], stopping: bool = False) -> dict[str, object]:
    """Run `checks` concurrently: `{"status": "ready" | "unavailable", "checks": {name: "ok" |
    "failing"}, "failed": [names]}`. A check that raises fails (logged at DEBUG)."""

    async def one(name: str, check: ReadyCheck) -> bool:
        try:
            return bool(await check())
        except Exception as exc:
            log.debug("ready check %s raised %r", name, exc)
            return False

    names = list(checks)
    results = await asyncio.gather(*(one(n, checks[n]) for n in names))
    states = {n: "ok" if ok else "failing" for n, ok in zip(names, results, strict=True)}
    if stopping:
        states["shutdown"] = "failing"
    failed = [n for n, state in states.items() if state != "ok"]
    return {"status": "unavailable" if failed else "ready", "checks": states, "failed": failed}


class HealthServer:
    """Serves health and metrics on `host:port` (port 0 picks a free one). The services pass
    `[inbound]` / `[workers]` `metrics_host`: 127.0.0.1 unless configured (0.0.0.0 in
    containers, where Prometheus scrapes over the container network)."""

    def __init__(
        self,
        host: str,
        port: int,
        checks: dict[str, ReadyCheck] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host = host
        self.port = port
        self.checks = dict(checks or {})
        self.registry = registry
        self._runner: web.AppRunner | None = None
        self._stopping = False

    def stopping(self) -> None:
        """The service is shutting down: not ready any more, whatever its checks say."""
        self._stopping = True

    async def report(self) -> dict[str, object]:
        """Every check's state and the overall answer (what `/readyz` serves)."""
        return await readiness(self.checks, self._stopping)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        body = await self.report()
        return web.json_response(body, status=200 if body["status"] == "ready" else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        """Start serving; returns the bound port."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("health and metrics on %s port %d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
