"""`/v1/inbound`: received SMS (long ones reassembled by the inbound service)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from smsgw_api.deps import ReadKey, StateDep, route_allowed, visible_routes
from smsgw_api.pagination import decode_cursor, encode_cursor, iso, time_range
from smsgw_api.problems import Problem
from smsgw_shared.store.repos.inbound import InboundFilter, InboundRepository

router = APIRouter(prefix="/v1/inbound", tags=["inbound"])


def inbound_view(m: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of a received message (the same fields as `message.received`)."""
    view = {
        "id": str(m["id"]),
        "from": m["sender"],
        "to": m["recipient"],
        "text": m["text"],
        "encoding": m["encoding"],
        "route": m["route"],
        "parts": m["parts_total"],
        "parts_received": m["parts_received"],
        "complete": m["complete"],
        "received_at": iso(m["received_at"]),
        "created_at": iso(m["created_at"]),
    }
    if m.get("raw_hex") is not None:
        view["raw_hex"] = m["raw_hex"]  # the original text, when characters were replaced
    return view


@router.get("", summary="Received SMS (newest first, cursor pagination)")
async def list_inbound(
    key: ReadKey,
    state: StateDep,
    sender: str | None = None,
    recipient: str | None = None,
    route: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Filter by sender, receiving number, route and time range (a route-limited key sees
    only what its routes received)."""
    time_range(since, until)
    flt = InboundFilter(
        sender=sender,
        recipient=recipient,
        route=route,
        since=since,
        until=until,
        visible_routes=visible_routes(state, key),
    )
    rows = await InboundRepository(state.engine).search(
        flt, limit + 1, decode_cursor(cursor) if cursor else None
    )
    page = rows[:limit]
    nxt = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    return {"data": [inbound_view(m) for m in page], "next_cursor": nxt}


@router.get("/{inbound_id}", summary="One received SMS")
async def get_inbound(inbound_id: str, key: ReadKey, state: StateDep) -> dict[str, Any]:
    """A received message by id."""
    try:
        mid = uuid.UUID(inbound_id)
    except ValueError as exc:
        raise Problem(
            404, "inbound_not_found", "No such message", f"{inbound_id!r} is not an id"
        ) from exc
    m = await InboundRepository(state.engine).get(mid)
    if m is None or not route_allowed(state, key, m["route"]):
        raise Problem(
            404, "inbound_not_found", "No such message", f"no received message {inbound_id}"
        )
    return inbound_view(m)
