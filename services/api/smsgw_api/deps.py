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


def enforce_rate_limit(state: AppState, key: ApiKey) -> None:
    """Raise 429 with Retry-After when the key is over its rate."""
    rate = key.rate_limit or state.settings.api.rate_limit_default
    wait = state.limiter.check(str(key.id), rate)
    if wait > 0:
        raise Problem(
            429,
            "rate_limited",
            "Rate limit exceeded",
            f"this key may make {rate:g} requests per second",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


async def authorize(conn: HTTPConnection, state: AppState, scope: str) -> ApiKey:
    """The caller's key with `scope` (admin implies every scope): 401 without a valid key,
    429 over its rate, 403 without the scope."""
    key = await resolve_key(conn, state)
    if key is None:
        raise UNAUTHORIZED
    enforce_rate_limit(state, key)
    if not key.has_scope(scope):
        raise Problem(
            403, "forbidden_scope", "Insufficient scope", f"this key lacks the {scope!r} scope"
        )
    return key


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
