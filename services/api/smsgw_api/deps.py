"""FastAPI dependencies: the application state, the caller's key, scopes."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from smsgw_api.auth import KeyCache, RateLimiter, bearer, parse_basic
from smsgw_api.problems import Problem
from smsgw_shared.amqp import AmqpConnection, Publisher
from smsgw_shared.config import Settings
from smsgw_shared.routing import Router
from smsgw_shared.store.repos.idempotency import IdempotencyRepository
from smsgw_shared.store.repos.keys import ApiKey, KeyRepository
from smsgw_shared.store.repos.messages import MessageRepository

if TYPE_CHECKING:
    from smsgw_api.services.ingest import Ingestor
    from smsgw_api.services.rpc import RpcClient


@dataclass
class AppState:
    """Everything the routes need, built once in the app's lifespan."""

    settings: Settings
    engine: AsyncEngine
    amqp: AmqpConnection
    publisher: Publisher
    router: Router
    keys: KeyRepository
    key_cache: KeyCache
    messages: MessageRepository
    idempotency: IdempotencyRepository
    ingestor: Ingestor
    rpc: RpcClient
    limiter: RateLimiter = field(default_factory=RateLimiter)
    extras: dict[str, Any] = field(default_factory=dict)


async def get_state(request: Request) -> AppState:
    """The application state (set by the lifespan); async so FastAPI does not run it in a
    worker thread per request."""
    state: AppState = request.app.state.smsgw
    return state


StateDep = Annotated[AppState, Depends(get_state)]

UNAUTHORIZED = Problem(
    401,
    "unauthorized",
    "Missing or invalid API key",
    "Send `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
    headers={"WWW-Authenticate": 'Bearer realm="smsgw"'},
)


async def resolve_key(request: HTTPConnection, state: AppState) -> ApiKey | None:
    """The key presented in the headers (Bearer, X-API-Key or Basic), if valid; works for
    HTTP requests and WebSocket handshakes alike."""
    header = request.headers.get("authorization", "")
    if header:
        secret = bearer(header)
        if secret:
            return await state.key_cache.by_secret(secret)
        basic = parse_basic(header)
        if basic:
            return await state.key_cache.by_name_and_secret(*basic)
        return None
    api_key = request.headers.get("x-api-key")
    if api_key:
        return await state.key_cache.by_secret(api_key.strip())
    return None


def key_rate(state: AppState, key: ApiKey) -> float:
    """The key's rate (0: unlimited)."""
    return key.rate_limit or state.settings.api.rate_limit_default


def rate_problem(rate: float, wait: float) -> Problem:
    """429 with Retry-After."""
    return Problem(
        429,
        "rate_limited",
        "Rate limit exceeded",
        f"this key may send to {rate:g} recipients (or make {rate:g} other calls) a second",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


def enforce_rate_limit(state: AppState, key: ApiKey, cost: float = 1.0) -> None:
    """Raise 429 with Retry-After when the key is over its rate; else take `cost` (0: only
    check that a call may start — a send pays per recipient when it is accepted)."""
    rate = key_rate(state, key)
    wait = (
        state.limiter.admit(str(key.id), rate)
        if cost <= 0
        else state.limiter.check(str(key.id), rate, cost)
    )
    if wait > 0:
        raise rate_problem(rate, wait)


def forbidden_scope(scope: str) -> Problem:
    return Problem(
        403, "forbidden_scope", "Insufficient scope", f"this key lacks the {scope!r} scope"
    )


async def authorize(conn: HTTPConnection, state: AppState, scope: str) -> ApiKey:
    """The caller's key with `scope` (admin implies every scope): 401 without a valid key,
    429 over its rate, 403 without the scope. Sends are charged per recipient by the
    ingestor; every other call costs one."""
    key = await resolve_key(conn, state)
    if key is None:
        raise UNAUTHORIZED
    enforce_rate_limit(state, key, 0 if scope == "send" else 1)
    if not key.has_scope(scope):
        raise forbidden_scope(scope)
    return key


def route_allowed(state: AppState, key: ApiKey, route: str) -> bool:
    """Whether the key may use (and see) `route`: every route for a key without routes."""
    return not key.routes or state.router.covers(key.routes, route)


def visible_routes(state: AppState, key: ApiKey) -> tuple[str, ...] | None:
    """The routes and patterns whose traffic the key may see (None: every route)."""
    return state.router.visible_patterns(key.routes) if key.routes else None


def require(scope: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency that demands `scope`.

    One flat dependency (no sub-dependencies): FastAPI's dependency solving costs about
    as much per level as the rest of a cached-key request.
    """

    async def _check(request: Request) -> ApiKey:
        return await authorize(request, request.app.state.smsgw, scope)

    return _check


SendKey = Annotated[ApiKey, Depends(require("send"))]
ReadKey = Annotated[ApiKey, Depends(require("read"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
ModemsKey = Annotated[ApiKey, Depends(require("modems"))]
WebhooksKey = Annotated[ApiKey, Depends(require("webhooks"))]
