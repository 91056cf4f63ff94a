"""A small HTTP server for services that are not the API: /healthz, /readyz, /metrics.

`/healthz` says the process is alive; `/readyz` runs the service's readiness checks
(broker and store reachable, devices connected…) and answers 503 naming what failed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]


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

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        failed = []
        for name, check in self.checks.items():
            try:
                ok = await check()
            except Exception as exc:
                log.debug("ready check %s raised %r", name, exc)
                ok = False
            if not ok:
                failed.append(name)
        if failed:
            return web.json_response({"status": "unavailable", "failed": failed}, status=503)
        return web.json_response({"status": "ready"})

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
