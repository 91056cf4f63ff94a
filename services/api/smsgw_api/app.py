"""The FastAPI application: built by `create_app(settings)`, wired in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text

from smsgw_api import openapi
from smsgw_api.auth import KeyCache, RateLimiter
from smsgw_api.deps import AppState
from smsgw_api.fastpath import SendFastPath
from smsgw_api.middleware import BodyLimitMiddleware, MetricsMiddleware
from smsgw_api.problems import (
    DATA_ERRORS,
    STORE_ERRORS,
    install_problem_handlers,
    problem_response,
    store_problem,
)
from smsgw_api.services.in_doubt import InDoubt
from smsgw_api.services.ingest import Ingestor
from smsgw_api.services.pipeline import GroupCommitter, JobDispatcher, OutboxRelay
from smsgw_api.services.rpc import RpcClient
from smsgw_api.services.scheduler import Scheduler
from smsgw_shared.amqp import AmqpConnection, Publisher, Topology
from smsgw_shared.amqp.rpc import RpcClient as AmqpRpc
from smsgw_shared.config import Settings
from smsgw_shared.observability import readiness
from smsgw_shared.routing import Router
from smsgw_shared.runtime import ShutdownReport, bounded, stop_tasks, tune_gc
from smsgw_shared.safety import check_production_safety
from smsgw_shared.store.db import make_engine
from smsgw_shared.store.repos.idempotency import IdempotencyRepository
from smsgw_shared.store.repos.keys import SCOPES, KeyRepository
from smsgw_shared.store.repos.messages import MessageRepository

log = logging.getLogger(__name__)

OUTBOX_BACKLOG = Gauge(
    "smsgw_api_outbox_backlog", "Jobs waiting in the outbox", multiprocess_mode="max"
)

DESCRIPTION = """
smsgw accepts SMS over REST, stores every message in PostgreSQL and hands it to GSM modem
and SMPP workers over RabbitMQ. Authenticate with `Authorization: Bearer <key>` or
`X-API-Key: <key>`. Errors are RFC 9457 problem details with a stable `code`.
"""


def _topology(settings: Settings) -> Topology:
    return Topology(settings.namespace, settings.workers.retry_delays)


async def _declare_job_queues(amqp: AmqpConnection, router: Router) -> None:
    """Declare every route's job queue, so a job published before its worker ever ran is
    kept (mandatory publish would otherwise refuse it); retried until it works."""
    topo = amqp.topology
    specs = []
    for route in router.known_routes():
        specs += topo.job_queues(route)
    await amqp.declare_forever(specs)


def metrics_text() -> bytes:
    """This process's metrics, or every worker's when the API runs several processes."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` worker processes: settings from SMSGW_CONFIG + env."""
    from smsgw_shared.config import load_settings
    from smsgw_shared.observability import setup_logging

    settings = load_settings()
    setup_logging("api", settings.log_level, settings.log_format)
    return create_app(settings)


def create_app(settings: Settings) -> FastAPI:
    """Build the API application for these settings (refused, naming each problem, when
    production settings carry known default secrets: `check_production_safety`)."""
    check_production_safety(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=20, max_overflow=20)
        topo = _topology(settings)
        amqp = AmqpConnection(settings.amqp_url, topo, name="smsgw-api")
        publisher = Publisher(amqp)
        router = Router(settings)
        messages = MessageRepository(engine)
        keys = KeyRepository(engine)
        committer = GroupCommitter(messages)
        in_doubt = InDoubt(messages)  # publishes that timed out, until the broker answers
        dispatcher = JobDispatcher(
            messages, publisher, publishers=settings.api.job_publishers, in_doubt=in_doubt
        )
        relay = OutboxRelay(messages, publisher, settings.api.outbox_interval, in_doubt=in_doubt)
        scheduler = Scheduler(messages, topo, settings.api.scheduler_interval)
        amqp_rpc = AmqpRpc(amqp)
        limiter = RateLimiter()
        state = AppState(
            settings=settings,
            engine=engine,
            amqp=amqp,
            publisher=publisher,
            router=router,
            keys=keys,
            key_cache=KeyCache(keys, settings.api.key_cache_ttl),
            messages=messages,
            idempotency=IdempotencyRepository(engine),
            ingestor=Ingestor(settings, router, committer, dispatcher, limiter),
            rpc=RpcClient(amqp_rpc, topo, {m.id for m in settings.modems}),
            limiter=limiter,
        )
        app.state.smsgw = state
        if settings.bootstrap_api_key:
            try:
                await keys.ensure("bootstrap", settings.bootstrap_api_key, list(SCOPES))
            except STORE_ERRORS as exc:
                log.error("could not ensure the bootstrap key (store down?): %r", exc)

        broker_ready = asyncio.Event()
        state.extras["broker_ready"] = broker_ready

        async def _broker() -> None:
            await amqp.connect_forever()
            await _declare_job_queues(amqp, router)
            broker_ready.set()

        broker_task = asyncio.create_task(_broker(), name="broker-connect")
        committer.start()
        dispatcher.start()
        relay.start(after=broker_ready)
        scheduler.start()

        async def _housekeeping() -> None:
            """The outbox backlog gauge every 5 s; expired idempotency keys every minute."""
            for tick in itertools.count():
                with contextlib.suppress(Exception):
                    OUTBOX_BACKLOG.set(await messages.outbox_backlog())
                if tick % 12 == 0:
                    try:
                        while await state.idempotency.sweep() >= 10_000:
                            pass
                    except Exception as exc:
                        log.warning("idempotency sweep: %r", exc)
                await asyncio.sleep(5)

        backlog_task = asyncio.create_task(_housekeeping(), name="housekeeping")
        # Everything built so far lives as long as the process (GC full passes otherwise
        # show up as 100+ ms latency spikes).
        tune_gc()
        try:
            yield
        finally:
            # uvicorn has stopped taking requests and given those in hand up to
            # settings.shutdown_timeout; the jobs they committed are published now (bounded),
            # what is left stays in the outbox for the relay.
            report = ShutdownReport(
                in_hand=dispatcher.backlog,
                fate="they stay in the outbox; the outbox relay publishes them (any API "
                "process, or this one when it starts again)",
            )
            await stop_tasks([backlog_task, broker_task])
            await scheduler.stop()
            await relay.stop()
            report.unfinished = await dispatcher.stop(min(5.0, settings.shutdown_timeout))
            await committer.stop()
            await in_doubt.aclose()  # publishes still in doubt: their rows stay held
            for fn in state.extras.get("on_shutdown", []):
                with contextlib.suppress(Exception):
                    await fn()
            # Bounded: a broker that does not answer must not hold the process.
            await bounded(amqp_rpc.close(), "closing the RPC client")
            await bounded(publisher.close(), "closing the publisher")
            await bounded(amqp.close(), "closing the broker connection")
            await engine.dispose()
            report.log(log)

    app = FastAPI(
        title="smsgw",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks look up the global providers on every request;
        # smsgw exports Prometheus metrics and does not use them.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_tags=[
            {"name": "messages", "description": "Send and track SMS"},
            {"name": "inbound", "description": "Received SMS"},
            {"name": "routes", "description": "Modems, SMPP binds and their live state"},
            {"name": "webhooks", "description": "Signed event callbacks"},
            {"name": "events", "description": "Live event streams (SSE, WebSocket)"},
            {"name": "keys", "description": "API keys (admin)"},
            {"name": "health", "description": "Probes and metrics"},
        ],
    )
    install_problem_handlers(app)

    async def _store_error(request: Request, exc: Exception) -> JSONResponse:
        problem = store_problem(exc)
        if problem.status == 503:
            log.warning("store error on %s: %r", request.url.path, exc)
        return problem_response(problem, request.url.path)

    for exc_class in (*STORE_ERRORS, *DATA_ERRORS):
        app.add_exception_handler(exc_class, _store_error)

    # Added first, so it runs inside CORS, the body limit and the metrics.
    app.add_middleware(SendFastPath)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimitMiddleware, limit=settings.api.max_body_bytes)
    app.add_middleware(MetricsMiddleware)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Broker and store reachable: each check's state (`checks`), 503 naming what
        failed (`failed`)."""
        state: AppState = request.app.state.smsgw

        async def broker() -> bool:
            return state.amqp.is_connected

        async def store() -> bool:
            async with asyncio.timeout(3), state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True

        body = await readiness({"broker": broker, "store": store})
        return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503)

    @app.get("/metrics", tags=["health"], include_in_schema=True)
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)

    from smsgw_api.routes import include_routers

    include_routers(app)
    from smsgw_api import console

    app.include_router(console.router)  # /console: the operator console (not in OpenAPI)
    openapi.install(app)
    return app
