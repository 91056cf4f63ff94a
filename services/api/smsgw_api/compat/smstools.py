"""smstools-http-api (seed 001): `/api/v1.0/sms/…` with HTTP Basic auth (key name:secret).

`POST`/`GET /api/v1.0/sms/outgoing` → `201 {"message_id": {phone: id}, "parts_count",
"sent_text"}`; `GET /api/v1.0/sms/sent/<message_id>` → `From`, `To`, `Sent`, `message_id`;
`GET /api/v1.0/sms/<kind>/` lists ids as the project's later versions do. The message id is
ours (a UUID) where smsd's spool file name used to be. Per-user number permissions (the
seed's `MOBILE_PERMS`) are the key's allowed-number rules.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from smsgw_api.auth import parse_basic
from smsgw_api.compat.common import rate_limited
from smsgw_api.deps import AppState, StateDep
from smsgw_api.problems import Problem
from smsgw_api.services.ingest import SendSpec
from smsgw_shared.store.repos.keys import ApiKey
from smsgw_shared.store.repos.messages import MessageFilter

router = APIRouter(prefix="/api/v1.0/sms", tags=["compat: smstools-http-api"])

# smsd's spool directories → the message states whose files would be in them.
KINDS: dict[str, tuple[str, ...]] = {
    "outgoing": ("scheduled", "queued"),
    "checked": ("sending",),
    "sent": ("sent", "delivered", "undelivered", "partially_delivered", "expired"),
    "failed": ("failed", "rejected", "canceled"),
}


class SmstoolsError(Exception):
    """An answer in the seed's `{"error": …}` shape."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers


def _answer(exc: SmstoolsError) -> JSONResponse:
    return JSONResponse({"error": exc.error}, status_code=exc.status, headers=exc.headers)


# Flask-HTTPAuth's challenge and the seed's error handler.
UNAUTHORIZED = SmstoolsError(
    401, "Unauthorized access", {"WWW-Authenticate": 'Basic realm="Authentication Required"'}
)
NOT_FOUND = SmstoolsError(404, "Not found")


async def basic_key(request: Request, state: AppState) -> ApiKey:
    """The key named by Basic auth (name:secret), else 401 as Flask-HTTPAuth answers."""
    creds = parse_basic(request.headers.get("authorization", ""))
    key = await state.key_cache.by_name_and_secret(*creds) if creds else None
    if key is None:
        raise UNAUTHORIZED
    limited = rate_limited(state, key)
    if limited is not None:
        raise SmstoolsError(429, "Too many requests", limited.headers)
    return key


def _check(body: Any) -> tuple[list[str], str]:
    """(mobiles, text) from the request object, or 400 as the seed answers."""
    if not isinstance(body, dict) or not body:
        raise SmstoolsError(400, "Request error")
    mobiles, text = body.get("mobiles"), body.get("text")
    if not isinstance(mobiles, list) or not mobiles:
        raise SmstoolsError(400, "Request error")
    if not all(isinstance(m, str) for m in mobiles) or not isinstance(text, str) or not text:
        raise SmstoolsError(400, "Request error")
    return mobiles, text


async def _send(state: AppState, key: ApiKey, mobiles: list[str], text: str) -> JSONResponse:
    if not key.has_scope("send"):
        raise SmstoolsError(403, "Forbidden")
    # Before any per-number work: a 1 MB body holds ~70,000 numbers.
    limit = state.settings.api.max_recipients
    if len(mobiles) > limit:
        raise SmstoolsError(400, f"Too many mobiles: {len(mobiles)}, the limit is {limit}")
    result: dict[str, Any] = {"message_id": {}}
    valid: list[str] = []
    seen: set[str] = set()
    for mobile in mobiles:
        if not (mobile.isascii() and mobile.isdigit()):
            result[mobile] = "Not valid"  # the seed puts this beside message_id, not in it
        elif mobile not in seen:
            seen.add(mobile)
            valid.append(mobile)
    ids: dict[str, str] = result["message_id"]
    parts = 1
    if valid:
        try:
            accepted = await state.ingestor.accept(key, SendSpec(recipients=valid, text=text))
        except Problem as exc:
            if exc.code != "no_valid_recipients":
                raise SmstoolsError(400, exc.detail or exc.title) from exc
            errors = exc.extra.get("errors", [])
            for mobile, err in zip(valid, errors, strict=False):
                if err.get("code") == "number_not_allowed":
                    ids[mobile] = "Forbidden"
                else:
                    result[mobile] = "Not valid"
        else:
            parts = accepted.messages[0].parts
            for mobile, outcome in zip(valid, accepted.messages, strict=True):
                if outcome.id is not None:
                    ids[mobile] = outcome.id
                elif outcome.error_code == "number_not_allowed":
                    ids[mobile] = "Forbidden"
                else:
                    result[mobile] = "Not valid"
    result["sent_text"] = text
    result["parts_count"] = parts
    return JSONResponse(result, status_code=201)


@router.post("/outgoing", status_code=201, summary="smstools: send to several mobiles")
async def outgoing_post(request: Request, state: StateDep) -> JSONResponse:
    """`{"text": "...", "mobiles": ["7968…", …]}` → 201 with an id per mobile."""
    try:
        key = await basic_key(request, state)
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:  # deep nesting: RecursionError
            raise SmstoolsError(400, "Request error") from exc
        return await _send(state, key, *_check(body))
    except SmstoolsError as exc:
        return _answer(exc)


@router.get("/outgoing", summary="smstools: send (query form, later versions)")
async def outgoing_get(request: Request, state: StateDep) -> JSONResponse:
    """`?mobiles=a,b&text=…` (a `+` decoded as a space is put back, as the project did)."""
    q = request.query_params
    body: dict[str, Any] = {}
    if q.get("mobiles"):
        body["mobiles"] = [m for m in q["mobiles"].replace(" ", "+").split(",") if m]
    if q.get("text"):
        body["text"] = q["text"]
    try:
        key = await basic_key(request, state)
        mobiles, text = _check(body)
        return await _send(state, key, [m.lstrip("+") for m in mobiles], text)
    except SmstoolsError as exc:
        return _answer(exc)


def _sent(value: datetime | None) -> str | None:
    """smsd's `Sent:` header: `YY-MM-DD HH:MM:SS` (UTC here)."""
    return value.strftime("%y-%m-%d %H:%M:%S") if value else None


def _reader(key: ApiKey) -> None:
    """Lookups are reads: the key needs the `read` scope (the seed had one user class)."""
    if not key.has_scope("read"):
        raise SmstoolsError(403, "Forbidden")


async def _own(state: AppState, key: ApiKey, message_id: str) -> dict[str, Any]:
    """The message, if this key sent it (an admin key: any message)."""
    try:
        mid = uuid.UUID(message_id)
    except ValueError as exc:
        raise NOT_FOUND from exc
    m = await state.messages.get(mid)
    if m is None or (not key.is_admin and m.get("api_key_id") != key.id):
        raise NOT_FOUND
    return m


@router.get("/{kind}/", summary="smstools: list message ids of a spool (later versions)")
async def list_kind(kind: str, request: Request, state: StateDep) -> JSONResponse:
    """`{"total_count", "limit", "message_id": [...]}`, newest first."""
    try:
        key = await basic_key(request, state)
        _reader(key)
        if kind not in KINDS:
            raise NOT_FOUND
    except SmstoolsError as exc:
        return _answer(exc)
    limit = state.settings.compat.smstools_list_limit
    owner = None if key.is_admin else key.id
    ids: list[str] = []
    for status in KINDS[kind]:
        rows = await state.messages.list(
            MessageFilter(status=status, api_key_id=owner), limit, None
        )
        ids += [str(r["id"]) for r in rows]
    return JSONResponse({"total_count": len(ids), "limit": limit, "message_id": ids[:limit]})


@router.get("/{kind}/{message_id:path}", summary="smstools: one message (sent, outgoing, …)")
async def get_one(kind: str, message_id: str, request: Request, state: StateDep) -> JSONResponse:
    """`From` (the sending key's name), `To`, `Sent` (`YY-MM-DD HH:MM:SS`), `message_id`."""
    try:
        key = await basic_key(request, state)
        _reader(key)
        if kind not in KINDS:
            raise NOT_FOUND
        m = await _own(state, key, message_id)
        if m["status"] not in KINDS[kind]:
            raise NOT_FOUND
    except SmstoolsError as exc:
        return _answer(exc)
    sender = key
    if m.get("api_key_id") not in (None, key.id):
        sender = await state.keys.get(m["api_key_id"]) or key
    return JSONResponse(
        {
            "From": sender.name,
            "To": m["to_number"].lstrip("+"),
            "Sent": _sent(m["sent_at"]),
            "message_id": str(m["id"]),
        }
    )
