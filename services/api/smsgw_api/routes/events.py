"""Live events: `GET /v1/events` (Server-Sent Events) and `GET /v1/ws` (WebSocket).

Both read the store's `event_log` (written by the inbound service), so a client resumes
exactly where it left off (`Last-Event-ID`, `?since=`) and every API process serves every
event. `EventStream` is the shared reader (the compat adapters use it too).
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

from smsgw_api.deps import AppState, ReadKey, StateDep, resolve_key
from smsgw_api.problems import Problem
from smsgw_api.routes.webhooks import EVENT_RE
from smsgw_shared.config import check_route
from smsgw_shared.store.repos.event_log import EventLogRepository, LoggedEvent, StreamFilter
from smsgw_shared.store.repos.keys import ApiKey

router = APIRouter(tags=["events"])

POLL_INTERVAL = 0.25  # seconds between reads of the event log
KEEPALIVE = 15.0  # seconds of silence before an SSE comment keeps proxies from closing
# An id below the newest seen but not yet visible is a transaction still committing; wait
# this long for it before moving the resume point past it (a rolled-back id never appears).
GAP_TIMEOUT = 5.0


class EventStream:
    """Reads the event log after a position, in id order, for one filter.

    Ids come from a sequence, so a transaction that took a lower id may commit after one
    with a higher id. The stream delivers each event once, as soon as it is visible, and
    keeps its resume point (`position`) below ids still missing until GAP_TIMEOUT.
    """

    def __init__(self, repo: EventLogRepository, flt: StreamFilter, after: int) -> None:
        self.repo = repo
        self.flt = flt
        self.position = after  # every id <= position has been handled
        self._seen: set[int] = set()  # handled ids above position
        self._gaps: dict[int, float] = {}  # missing id → first noticed (monotonic)

    async def poll(self) -> list[LoggedEvent]:
        """The events visible since the last poll that the filter lets through."""
        rows = await self.repo.read_after(self.position, self.flt)
        fresh = [r for r in rows if r.id not in self._seen]
        for r in fresh:
            self._seen.add(r.id)
        self._advance()
        return [r for r in fresh if r.payload is not None]

    def _advance(self) -> None:
        now = time.monotonic()
        top = max(self._seen, default=self.position)
        for i in range(self.position + 1, top):
            if i not in self._seen:
                self._gaps.setdefault(i, now)
        while True:
            nxt = self.position + 1
            if nxt in self._seen:
                self._seen.discard(nxt)
            elif nxt in self._gaps and now - self._gaps[nxt] > GAP_TIMEOUT:
                del self._gaps[nxt]
            else:
                break
            self._gaps.pop(nxt, None)
            self.position = nxt

    async def follow(self, interval: float = POLL_INTERVAL) -> AsyncIterator[list[LoggedEvent]]:
        """Batches of events forever (an empty batch after each quiet poll)."""
        while True:
            batch = await self.poll()
            yield batch
            if not batch:
                await asyncio.sleep(interval)


def parse_filter(types: str | None, route: str | None, key: ApiKey) -> StreamFilter:
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
    return StreamFilter(tlist, rlist, viewer_id=key.id, admin="admin" in key.scopes)


async def start_position(
    repo: EventLogRepository, last_event_id: str | None, since: str | None
) -> int:
    """Where to start: after `Last-Event-ID`, else `since` (an event id or RFC 3339 time),
    else the newest event (only what happens from now on)."""
    for raw in (last_event_id, since):
        value = (raw or "").strip()
        if not value:
            continue
        if value.isdigit():
            return int(value)
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise Problem(
                422, "invalid_since", "Invalid resume point", "use an event id or an RFC 3339 time"
            ) from exc
        if ts.tzinfo is None:
            raise Problem(422, "invalid_since", "Invalid resume point", "the time needs an offset")
        return await repo.id_before(ts)
    return await repo.last_id()


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
    flt = parse_filter(types, route, key)
    repo = EventLogRepository(state.engine)
    stream = EventStream(repo, flt, await start_position(repo, last_event_id, since))

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        quiet_since = time.monotonic()
        async for batch in stream.follow():
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
    key = await websocket_key(ws, state, api_key)
    if key is None or not key.has_scope("read"):
        await ws.close(code=4401 if key is None else 4403, reason="unauthorized")
        return
    repo = EventLogRepository(state.engine)
    try:
        flt = parse_filter(types, route, key)
        after = await start_position(repo, None, since)
    except Problem as exc:
        await ws.close(code=4422, reason=(exc.detail or exc.title)[:120])
        return
    await ws.accept()
    closed = asyncio.Event()

    async def watch() -> None:
        # Client frames are ignored; reading them notices the close.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
        closed.set()

    watcher = asyncio.create_task(watch())
    try:
        async for batch in EventStream(repo, flt, after).follow():
            if closed.is_set():
                break
            for ev in batch:
                await ws.send_text(ws_frame(ev))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        watcher.cancel()
        with contextlib.suppress(Exception):
            await ws.close()
