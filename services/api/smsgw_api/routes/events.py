"""Live events: `GET /v1/events` (Server-Sent Events) and `GET /v1/ws` (WebSocket).

Both follow the store's `event_log` (written by the inbound service) through the process's
one shared tail (`services.event_hub`), so a client resumes exactly where it left off
(`Last-Event-ID`, `?since=`) and every API process serves every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from smsgw_api.deps import (
    UNAUTHORIZED,
    AppState,
    ReadKey,
    StateDep,
    enforce_rate_limit,
    forbidden_scope,
    resolve_key,
    visible_routes,
)
from smsgw_api.problems import Problem, problem_response
from smsgw_api.routes.webhooks import EVENT_RE
from smsgw_api.services.event_hub import Subscription, TooManyStreams, hub_for
from smsgw_shared.config import check_route
from smsgw_shared.store.repos.event_log import EventLogRepository, LoggedEvent, StreamFilter
from smsgw_shared.store.repos.keys import ApiKey

router = APIRouter(tags=["events"])

KEEPALIVE = 15.0  # seconds of silence before an SSE comment keeps proxies from closing
MAX_EVENT_ID = 2**63 - 1  # event ids are PostgreSQL bigints


def parse_filter(
    types: str | None, route: str | None, key: ApiKey, state: AppState
) -> StreamFilter:
    """The filter from `types=a,b` and `route=x,y`, limited to what the key may read."""
    tlist = tuple(t.strip() for t in (types or "").split(",") if t.strip())
    bad = [t for t in tlist if not EVENT_RE.match(t)]
    if bad:
        raise Problem(422, "invalid_event_type", "Unknown event type", ", ".join(bad))
    rlist = tuple(r.strip() for r in (route or "").split(",") if r.strip())
    try:
        for r in rlist:
            check_route(r)
    except ValueError as exc:
        raise Problem(422, "invalid_route", "Invalid route", str(exc)) from exc
    if "*" in tlist:
        tlist = ()
    return StreamFilter(
        tlist,
        rlist,
        viewer_id=key.id,
        admin=key.is_admin,
        visible_routes=visible_routes(state, key),
    )


async def start_position(
    repo: EventLogRepository, last_event_id: str | None, since: str | None
) -> int | None:
    """Where to resume: after `Last-Event-ID`, else `since` (an event id or RFC 3339
    time), else None (only what happens from now on)."""
    for raw in (last_event_id, since):
        value = (raw or "").strip()
        if not value:
            continue
        if value.isdigit():
            if len(value) > 19 or int(value) > MAX_EVENT_ID:
                raise Problem(
                    422, "invalid_since", "Invalid resume point", "no event has so large an id"
                )
            return int(value)
        if len(value) > 64:
            raise Problem(
                422, "invalid_since", "Invalid resume point", "use an event id or an RFC 3339 time"
            )
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise Problem(
                422, "invalid_since", "Invalid resume point", "use an event id or an RFC 3339 time"
            ) from exc
        if ts.tzinfo is None:
            raise Problem(422, "invalid_since", "Invalid resume point", "the time needs an offset")
        return await repo.id_before(ts)
    return None


def open_stream(state: AppState, key: ApiKey, flt: StreamFilter) -> Subscription:
    """A place in the shared tail, or a 429 problem over the stream limits."""
    try:
        return hub_for(state).subscribe(key, flt)
    except TooManyStreams as exc:
        raise Problem(
            429, "too_many_streams", "Too many streams", str(exc), headers={"Retry-After": "5"}
        ) from exc


def sse_frame(ev: LoggedEvent) -> str:
    """One SSE event: `id` is the log position to resume from, `data` the JSON envelope."""
    return (
        f"id: {ev.id}\nevent: {ev.type}\ndata: {json.dumps(ev.payload, separators=(',', ':'))}\n\n"
    )


@router.get(
    "/v1/events",
    summary="Live events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    request: Request,
    key: ReadKey,
    state: StateDep,
    types: Annotated[str | None, Query(description="e.g. message.status,message.received")] = None,
    route: Annotated[str | None, Query(description="e.g. smpp:b1,modem:*")] = None,
    since: Annotated[str | None, Query(description="Event id or RFC 3339 time")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`message.status`, `message.received` and `route.state` events as they happen;
    reconnecting with `Last-Event-ID` replays what was missed."""
    flt = parse_filter(types, route, key, state)
    after = await start_position(EventLogRepository(state.engine), last_event_id, since)
    sub = open_stream(state, key, flt)

    async def body() -> AsyncIterator[str]:
        await sub.start(after)
        yield "retry: 2000\n\n"  # the stream is live: nothing visible from now on is missed
        quiet_since = time.monotonic()
        async for batch in sub.follow():
            if await request.is_disconnected():
                return
            for ev in batch:
                yield sse_frame(ev)
            if batch:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def websocket_key(ws: WebSocket, state: AppState, api_key: str | None) -> ApiKey | None:
    """The key presented by a WebSocket client: Authorization/X-API-Key header or ?api_key=."""
    if ws.headers.get("authorization") or ws.headers.get("x-api-key"):
        return await resolve_key(ws, state)
    return await state.key_cache.by_secret(api_key.strip()) if api_key else None


def ws_frame(ev: LoggedEvent) -> str:
    """One WebSocket frame: the event envelope plus `seq`, its log position (`?since=`)."""
    payload: dict[str, Any] = dict(ev.payload or {})
    payload["seq"] = ev.id
    return json.dumps(payload, separators=(",", ":"))


async def refuse_websocket(ws: WebSocket, problem: Problem) -> None:
    """Refuse a handshake with the problem's HTTP status and body where the server can
    (uvicorn can), else by closing with 4000 + the status (4401, 4403, 4422, 4429)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(problem_response(problem))
    else:
        await ws.close(code=4000 + problem.status, reason=(problem.detail or problem.title)[:120])


@router.websocket("/v1/ws")
async def websocket(
    ws: WebSocket,
    types: str | None = None,
    route: str | None = None,
    since: str | None = None,
    api_key: str | None = None,
) -> None:
    """The same events as `/v1/events`, as JSON text frames."""
    state: AppState = ws.app.state.smsgw
    try:
        key = await websocket_key(ws, state, api_key)
        if key is None:
            raise UNAUTHORIZED
        enforce_rate_limit(state, key)
        if not key.has_scope("read"):
            raise forbidden_scope("read")
        flt = parse_filter(types, route, key, state)
        after = await start_position(EventLogRepository(state.engine), None, since)
        sub = open_stream(state, key, flt)
    except Problem as exc:
        await refuse_websocket(ws, exc)
        return
    await sub.start(after)  # live before the client is told it is connected
    await ws.accept()
    closed = asyncio.Event()

    async def watch() -> None:
        # Client frames are ignored (any size up to the server's cap); reading them
        # notices the close.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
        closed.set()

    watcher = asyncio.create_task(watch())
    try:
        async for batch in sub.follow():
            if closed.is_set():
                break
            for ev in batch:
                await ws.send_text(ws_frame(ev))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sub.close()
        watcher.cancel()
        with contextlib.suppress(Exception):
            await ws.close()
