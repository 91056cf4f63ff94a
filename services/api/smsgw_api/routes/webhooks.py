"""`/v1/webhooks`: signed event subscriptions, their deliveries and redelivery."""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from smsgw_api.deps import StateDep, WebhooksKey, route_allowed
from smsgw_api.pagination import decode_cursor, encode_cursor, iso
from smsgw_api.problems import Problem
from smsgw_shared.config import check_route
from smsgw_shared.store.repos.keys import ApiKey
from smsgw_shared.store.repos.webhooks import WebhookRepository
from smsgw_shared.urlguard import UrlRefused, check_url

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

STATUSES = (
    "queued|sending|sent|delivered|undelivered|expired|failed|rejected|canceled|partially_delivered"
)
EVENT_RE = re.compile(rf"^(\*|message\.received|route\.state|message\.status(\.({STATUSES}))?)$")


class WebhookCreate(BaseModel):
    """`POST /v1/webhooks`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/smsgw",
                    "events": ["message.received", "message.status.delivered"],
                    "routes": ["modem:*"],
                    "description": "CRM",
                }
            ]
        },
    )

    url: StrictStr = Field(max_length=2000, description="http(s) URL receiving the POSTs")
    events: list[StrictStr] = Field(
        min_length=1,
        max_length=50,
        description="message.received, message.status, message.status.<state>, route.state, *",
    )
    routes: list[StrictStr] = Field(default_factory=list, max_length=100)
    numbers: list[StrictStr] = Field(
        default_factory=list, max_length=1000, description="Only events whose `to` is one of these"
    )
    description: StrictStr | None = Field(None, max_length=500)

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if not EVENT_RE.match(e)]
        if bad:
            raise ValueError(f"unknown event type(s): {', '.join(bad)}")
        return sorted(set(v))

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: list[str]) -> list[str]:
        return [check_route(r) for r in v]


def webhook_view(w: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    """The public JSON of a subscription (the secret only right after create/rotate)."""
    out: dict[str, Any] = {
        "id": str(w["id"]),
        "url": w["url"],
        "events": list(w["events"]),
        "routes": list(w["routes"] or []),
        "numbers": list(w["numbers"] or []),
        "description": w["description"],
        "created_at": iso(w["created_at"]),
        "secrets_rotated_at": iso(w.get("secrets_rotated_at")),
    }
    if secret is not None:
        out["secret"] = secret
    return out


def delivery_view(d: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of one delivery with its attempts."""
    return {
        "id": str(d["id"]),
        "event_id": d["event_id"],
        "event_type": d["event_type"],
        "status": d["status"],
        "attempts": d["attempts"],
        "last_status_code": d["last_status_code"],
        "last_error": d["last_error"],
        "next_attempt_at": iso(d["next_attempt_at"]) if d["status"] == "pending" else None,
        "created_at": iso(d["created_at"]),
        "updated_at": iso(d["updated_at"]),
        "payload": json.loads(d["payload"]),
        "attempts_detail": [
            {
                "status_code": a["status_code"],
                "error": a["error"],
                "duration_ms": a["duration_ms"],
                "at": iso(a["attempted_at"]),
            }
            for a in d.get("attempts_detail", [])
        ],
    }


def _repo(state: StateDep) -> WebhookRepository:
    return WebhookRepository(state.engine)


def _parse(value: str, what: str = "webhook") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise Problem(
            404, f"{what}_not_found", f"No such {what}", f"{value!r} is not an id"
        ) from exc


async def _owned(state: StateDep, key: ApiKey, webhook_id: str) -> dict[str, Any]:
    """The subscription, if this key owns it (admin keys own every one); else 404."""
    w = await _repo(state).get(_parse(webhook_id))
    if w is None or not ("admin" in key.scopes or w["api_key_id"] == key.id):
        raise Problem(404, "webhook_not_found", "No such webhook", f"no webhook {webhook_id}")
    return w


def _webhook_routes(state: StateDep, key: ApiKey, asked: list[str]) -> list[str]:
    """The routes a subscription is filtered on: pools expanded to their members (what
    the inbound service matches events against); a route-limited key's subscription is
    always limited to its own routes (403 for a route outside them)."""
    if key.routes:
        outside = [r for r in asked if not route_allowed(state, key, r)]
        if outside:
            raise Problem(
                403,
                "route_not_allowed",
                "Route not allowed",
                f"this key may see only {', '.join(key.routes)}; not {', '.join(outside)}",
            )
        asked = asked or list(key.routes)
    return list(state.router.visible_patterns(asked))


@router.post("", status_code=201, summary="Subscribe to events")
async def create(body: WebhookCreate, key: WebhooksKey, state: StateDep) -> JSONResponse:
    """Create a subscription; the answer carries its signing `secret`, shown only once."""
    try:
        await check_url(body.url, state.settings.webhooks.allow_private)
    except UrlRefused as exc:
        raise Problem(422, "webhook_url_refused", "Webhook URL refused", str(exc)) from exc
    numbers = []
    if body.numbers:
        from smsgw_shared.sms.errors import InvalidNumberError
        from smsgw_shared.sms.phone import normalize_number

        for n in body.numbers:
            try:
                numbers.append(normalize_number(n, state.settings.api.default_region))
            except InvalidNumberError as exc:
                raise Problem(422, "invalid_number", "Invalid number", str(exc)) from exc
    row, secret = await _repo(state).create(
        url=body.url,
        events=body.events,
        routes=_webhook_routes(state, key, body.routes),
        numbers=numbers,
        description=body.description,
        api_key_id=key.id,
    )
    return JSONResponse(webhook_view(row, secret), status_code=201)


@router.get("", summary="List subscriptions")
async def list_webhooks(key: WebhooksKey, state: StateDep) -> dict[str, Any]:
    """This key's subscriptions (every one for admin keys)."""
    rows = await _repo(state).list_active(None if "admin" in key.scopes else key.id)
    return {"data": [webhook_view(w) for w in rows]}


@router.get("/{webhook_id}", summary="One subscription")
async def get_webhook(webhook_id: str, key: WebhooksKey, state: StateDep) -> dict[str, Any]:
    """A subscription (without its secret)."""
    return webhook_view(await _owned(state, key, webhook_id))


@router.delete("/{webhook_id}", status_code=204, summary="Delete a subscription")
async def delete_webhook(webhook_id: str, key: WebhooksKey, state: StateDep) -> None:
    """Stop delivering; pending deliveries are given up, the delivery log is kept."""
    w = await _owned(state, key, webhook_id)
    await _repo(state).deactivate(w["id"])


@router.post("/{webhook_id}/rotate", summary="Rotate the signing secret")
async def rotate(webhook_id: str, key: WebhooksKey, state: StateDep) -> dict[str, Any]:
    """A new secret (shown once); the previous one keeps signing for 24 h or until the next
    rotation, so receivers can switch without losing a delivery."""
    w = await _owned(state, key, webhook_id)
    secret = await _repo(state).rotate(w["id"])
    if secret is None:
        raise Problem(404, "webhook_not_found", "No such webhook", f"no webhook {webhook_id}")
    fresh = await _repo(state).get(w["id"])
    return webhook_view(fresh or w, secret)


@router.get("/{webhook_id}/deliveries", summary="Deliveries and their attempts")
async def deliveries(
    webhook_id: str,
    key: WebhooksKey,
    state: StateDep,
    status: Annotated[str | None, Query(pattern="^(pending|succeeded|dead)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first, each with every attempt (status code, error, duration)."""
    w = await _owned(state, key, webhook_id)
    rows = await _repo(state).deliveries(
        w["id"], limit + 1, decode_cursor(cursor) if cursor else None, status
    )
    page = rows[:limit]
    nxt = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    return {"data": [delivery_view(d) for d in page], "next_cursor": nxt}


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Deliver again",
)
async def redeliver(
    webhook_id: str, delivery_id: str, key: WebhooksKey, state: StateDep
) -> dict[str, Any]:
    """Make a delivery (succeeded, dead or still pending) due now."""
    w = await _owned(state, key, webhook_id)
    did = _parse(delivery_id, "delivery")
    repo = _repo(state)
    if not await repo.redeliver(w["id"], did):
        raise Problem(404, "delivery_not_found", "No such delivery", f"no delivery {delivery_id}")
    d = await repo.delivery(w["id"], did)
    assert d is not None
    return delivery_view(d)
