"""sms-api-server (seed 003): `/v1/send`, `/v1/query`, `/v1/sse` and the JSON-RPC
WebSockets `/v1/ws/jsonrpc` (SM.Submit, SM.Query) and `/v1/ws/jsonrpc/events` (SM.Deliver).

Errors are plain text as the Go original's `http.Error` (400, 404 where it said 502, 503).
The original had no authentication: here a key is presented as usual (Bearer, X-API-Key, Basic, or
`access_token` in the query for browsers' EventSource/WebSocket), or a caller from
`compat.smsapiserver_open_networks` acts as the key named `compat.smsapiserver_open_key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from smsgw_api.compat.common import rate_limited
from smsgw_api.compat.event_feed import FeedEvent, feed_for
from smsgw_api.deps import AppState, StateDep, resolve_key
from smsgw_api.problems import STORE_ERRORS, Problem
from smsgw_api.services.event_hub import Subscription, TooManyStreams
from smsgw_api.services.ingest import SendSpec
from smsgw_shared.store.repos.keys import ApiKey

router = APIRouter(prefix="/v1", tags=["compat: sms-api-server"])

STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
STATUS_TEXT |= {429: "Too Many Requests"}
STATUS_TEXT |= {502: "Bad Gateway", 503: "Service Unavailable"}

# (name, description, required, options) as the original's forms.
Form = tuple[tuple[str, str, bool, tuple[str, ...]], ...]
SUBMIT_FORM: Form = (
    ("src", "number of sender", False, ()),
    ("dst", "number of recipient", True, ()),
    ("text", "text message", True, ()),
    ("enc", "text encoding", False, ("latin1", "ucs2")),
    ("register", "registered delivery", False, ("final", "failure")),
)
QUERY_FORM: Form = (
    ("src", "number of sender", False, ()),
    ("message_id", "message id from send", True, ()),
)

# SMPP 3.4 §5.2.28 message_state names, as go-smpp reports them.
MESSAGE_STATE = {
    "scheduled": "ENROUTE",
    "queued": "ENROUTE",
    "sending": "ENROUTE",
    "sent": "ENROUTE",
    "delivered": "DELIVERED",
    "expired": "EXPIRED",
    "canceled": "DELETED",
    "undelivered": "UNDELIVERABLE",
    "failed": "UNDELIVERABLE",
    "partially_delivered": "UNDELIVERABLE",
    "rejected": "REJECTED",
}
RECEIPT_STAT = {
    "delivered": "DELIVRD",
    "undelivered": "UNDELIV",
    "partially_delivered": "UNDELIV",
    "expired": "EXPIRED",
    "rejected": "REJECTD",
}
ESM_RECEIPT = 0x04  # esm_class: SMSC delivery receipt (SMPP 3.4 §5.2.12)
EVENT_TYPES = ("message.status", "message.received")


class ApiError(Exception):
    """An HTTP error as the original writes it: status and one line of text."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers

    def response(self) -> PlainTextResponse:
        headers = {"X-Content-Type-Options": "nosniff"} | (self.headers or {})
        return PlainTextResponse(self.message + "\n", self.status, headers=headers)

    def rpc_text(self) -> str:
        return f"{self.status} {STATUS_TEXT.get(self.status, '')}: {self.message}"


UNAVAILABLE = ApiError(503, "store unavailable, retry later", {"Retry-After": "5"})


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def validate(form: Form, values: Mapping[str, str]) -> None:
    """The original's form check: first missing or unsupported parameter → 400."""
    for name, desc, required, options in form:
        value = values.get(name, "")
        if not value and required:
            raise ApiError(400, f"missing parameter {_quote(name)}: {desc}")
        if value and options and value not in options:
            supported = ", ".join(options)
            raise ApiError(
                400, f"invalid parameter {_quote(name)}={_quote(value)}; supported: {supported}"
            )


async def _open_key(conn: HTTPConnection, state: AppState) -> ApiKey | None:
    cfg = state.settings.compat
    if not cfg.smsapiserver_open_networks or conn.client is None:
        return None
    try:
        addr = ipaddress.ip_address(conn.client.host)
    except ValueError:
        return None
    if not any(
        addr in ipaddress.ip_network(n, strict=False) for n in cfg.smsapiserver_open_networks
    ):
        return None
    key = await state.keys.find(cfg.smsapiserver_open_key)
    return key if key is not None and key.revoked_at is None else None


async def caller(conn: HTTPConnection, state: AppState, scope: str | None) -> ApiKey:
    """The caller's key (headers, `access_token`, or an open network), with `scope` (None:
    any key; the JSON-RPC socket checks each call's own)."""
    key = await resolve_key(conn, state)
    token = conn.query_params.get("access_token")
    if key is None and token:
        key = await state.key_cache.by_secret(token)
    if key is None:
        key = await _open_key(conn, state)
    if key is None:
        raise ApiError(401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="smsgw"'})
    if scope is not None and not key.has_scope(scope):
        raise ApiError(403, f"Forbidden: this key lacks the {scope!r} scope")
    limited = rate_limited(state, key)
    if limited is not None:
        raise ApiError(429, limited.detail or "rate limited", limited.headers)
    return key


async def submit(state: AppState, key: ApiKey, values: Mapping[str, str]) -> dict[str, str]:
    """SM.Submit: one message to `dst`; our message id."""
    if not key.has_scope("send"):  # over a WebSocket opened by a read-only key
        raise ApiError(403, "Forbidden: this key lacks the 'send' scope")
    validate(SUBMIT_FORM, values)
    spec = SendSpec(
        recipients=[values["dst"]],
        text=values["text"],
        sender=values.get("src") or None,
        # latin1 and raw both mean "what fits": GSM-7 when it can, else UCS-2.
        encoding="ucs2" if values.get("enc") == "ucs2" else "auto",
        dlr=bool(values.get("register")),
    )
    try:
        accepted = await state.ingestor.accept(key, spec)
    except Problem as exc:
        raise ApiError(400 if exc.status < 500 else 503, exc.detail or exc.title) from exc
    message_id = accepted.messages[0].id
    assert message_id is not None
    return {"message_id": message_id}


def smpp_time(value: datetime | None) -> str:
    """SMPP absolute time `YYMMDDhhmmsstnnp` in UTC (§7.1.1), or ""."""
    return value.strftime("%y%m%d%H%M%S") + "000+" if value else ""


async def query(state: AppState, key: ApiKey, values: Mapping[str, str]) -> dict[str, Any]:
    """SM.Query: state, final date and error of one message."""
    validate(QUERY_FORM, values)
    # The original answered 502 (its SMSC's query_sm failed); here no SMSC is asked, and an
    # id that is not one of the caller's messages is the request's mistake: 404.
    failed = ApiError(404, "query_sm failed: no such message_id")
    try:
        mid = uuid.UUID(values["message_id"])
    except ValueError as exc:
        raise failed from exc
    if not key.has_scope("read"):  # SM.Query over a WebSocket opened by a send-only key
        raise ApiError(403, "Forbidden: this key lacks the 'read' scope")
    m = await state.messages.get(mid)
    if m is None or (not key.is_admin and m.get("api_key_id") != key.id):
        raise failed
    src = values.get("src")
    if src and m["sender"] and src.lstrip("+") != m["sender"].lstrip("+"):
        raise failed
    final = m["status"] not in ("scheduled", "queued", "sending", "sent")
    return {
        "message_state": MESSAGE_STATE.get(m["status"], "UNKNOWN"),
        "final_date": smpp_time(m["done_at"]) if final else "",
        "error_code": 0,
    }


MAX_FORM_FIELDS = 1000  # as Starlette's multipart limit


async def _form(request: Request) -> dict[str, str]:
    """Query parameters and the (multipart or urlencoded) body, like Go's `r.Form`."""
    values = dict(request.query_params)
    if request.method not in {"POST", "PUT"}:
        return values
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:  # Starlette stops at its 1,000th part
            form = await request.form()
        except StarletteHTTPException as exc:
            raise ApiError(400, f"invalid form: {exc.detail}") from exc
        values |= {k: v for k, v in form.items() if isinstance(v, str)}
    elif ctype == "application/x-www-form-urlencoded":
        # parse_qsl counts the fields before it parses any (Starlette's form parser, pure
        # Python per field, took 2 s of the event loop for a 1 MB body of 100,000 fields).
        raw = (await request.body()).decode("utf-8", "replace")
        try:
            pairs = parse_qsl(
                raw, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="replace"
            )
        except ValueError as exc:
            raise ApiError(400, f"invalid form: more than {MAX_FORM_FIELDS} fields") from exc
        values |= dict(pairs)
    return values


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body) + "\n", media_type="application/json")


@router.post("/send", summary="sms-api-server: send")
@router.put("/send", include_in_schema=False)
async def send(request: Request, state: StateDep) -> Response:
    """Form `src`, `dst`, `text`, `enc` (latin1|ucs2), `register` (final|failure)."""
    try:
        key = await caller(request, state, "send")
        return _json(await submit(state, key, await _form(request)))
    except ApiError as exc:
        return exc.response()
    except STORE_ERRORS:
        return UNAVAILABLE.response()


@router.get("/query", summary="sms-api-server: query status")
@router.head("/query", include_in_schema=False)
async def query_route(request: Request, state: StateDep) -> Response:
    """`src`, `message_id` → `message_state`, `final_date`, `error_code`."""
    try:
        key = await caller(request, state, "read")
        body = await query(state, key, dict(request.query_params))
    except ApiError as exc:
        return exc.response()
    except STORE_ERRORS:
        return UNAVAILABLE.response()
    if request.method == "HEAD":
        return Response(media_type="application/json")
    return _json(body)


async def delivery(state: AppState, event: FeedEvent) -> dict[str, Any] | None:
    """An event as the original's DeliveryReceipt: incoming SMS, or a receipt text."""
    p = event.payload
    if event.type == "message.received":
        return {
            "src": str(p.get("from") or p.get("sender") or ""),
            "dst": str(p.get("to") or p.get("recipient") or ""),
            "text": str(p.get("text") or ""),
            "emsclass": 0,
        }
    status = str(p.get("status") or "")
    m = await state.messages.get(event.message_id) if event.message_id else None
    if m is None or status not in RECEIPT_STAT:
        return None
    stamp = "%y%m%d%H%M"
    done = m["done_at"] or m["updated_at"]
    delivered = "001" if status == "delivered" else "000"
    text = (
        f"id:{m['id']} sub:001 dlvrd:{delivered} submit date:{m['created_at'].strftime(stamp)}"
        f" done date:{done.strftime(stamp)} stat:{RECEIPT_STAT[status]} err:000"
        f" text:{m['text'][:20]}"
    )
    return {"src": m["to_number"], "dst": m["sender"] or "", "text": text, "emsclass": ESM_RECEIPT}


async def open_deliveries(state: AppState, key: ApiKey) -> Subscription:
    """A live place in the event stream for this key, started (everything from now on is
    delivered), or a 429 over the stream limits: before the response or the accept."""
    try:
        sub = feed_for(state).open(key, EVENT_TYPES)
    except TooManyStreams as exc:
        raise ApiError(429, str(exc), {"Retry-After": "5"}) from exc
    await sub.start()
    return sub


async def deliveries(
    state: AppState, key: ApiKey, sub: Subscription | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Incoming SMS and receipts for this key, from now on."""
    async for event in feed_for(state).subscribe(key, EVENT_TYPES, sub):
        receipt = await delivery(state, event)
        if receipt is not None:
            yield receipt


@router.get("/sse", summary="sms-api-server: incoming SMS and receipts (SSE)")
async def sse(request: Request, state: StateDep) -> Response:
    """`Data: {"src", "dst", "text", "emsclass"}` per event, as the original writes it."""
    try:
        key = await caller(request, state, "read")
        sub = await open_deliveries(state, key)
    except ApiError as exc:
        return exc.response()
    except STORE_ERRORS:
        return UNAVAILABLE.response()

    async def lines() -> AsyncIterator[str]:
        async for receipt in deliveries(state, key, sub):
            yield "Data: " + json.dumps(receipt) + "\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream")


async def _ws_key(ws: WebSocket, scope: str | None) -> tuple[AppState, ApiKey] | None:
    state: AppState = ws.app.state.smsgw
    try:
        return state, await caller(ws, state, scope)
    except ApiError:
        await ws.close(code=1008)  # refused before the handshake completes: HTTP 403
        return None


@router.websocket("/ws/jsonrpc")
async def ws_jsonrpc(ws: WebSocket) -> None:
    """JSON-RPC (Go net/rpc codec): `SM.Submit` (`send` scope) and `SM.Query` (`read`)."""
    auth = await _ws_key(ws, None)
    if auth is None:
        return
    state, key = auth
    await ws.accept()
    methods = {"SM.Submit": submit, "SM.Query": query}
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            try:
                req = json.loads(await ws.receive_text())
                method, params, rid = req["method"], req.get("params") or [{}], req.get("id")
                arg = params[0] if isinstance(params, list) and params else {}
                values = {k: str(v) for k, v in arg.items() if v is not None}
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                await ws.close(code=1003)  # the Go codec drops a connection it cannot parse
                return
            result: Any = None
            error: str | None = None
            handler = methods.get(method)
            if handler is None:
                error = f"rpc: can't find method {method}"
            else:
                try:
                    result = await handler(state, key, values)
                except ApiError as exc:
                    error = exc.rpc_text()
            await ws.send_text(json.dumps({"id": rid, "result": result, "error": error}))


@router.websocket("/ws/jsonrpc/events")
async def ws_events(ws: WebSocket) -> None:
    """The server calls `SM.Deliver` on the client for each incoming SMS and receipt."""
    auth = await _ws_key(ws, "read")
    if auth is None:
        return
    state, key = auth
    try:
        sub = await open_deliveries(state, key)
    except ApiError:
        await ws.close(code=1013)  # try again later: over the stream limits
        return
    await ws.accept()

    async def calls() -> None:
        n = 0
        async for receipt in deliveries(state, key, sub):
            await ws.send_text(json.dumps({"method": "SM.Deliver", "params": [receipt], "id": n}))
            n += 1

    async def replies() -> None:
        # A reply with an error ends the session, as the original's client call does.
        while True:
            with contextlib.suppress(ValueError, RecursionError):
                reply = json.loads(await ws.receive_text())
                if isinstance(reply, dict) and reply.get("error"):
                    return

    tasks = [asyncio.create_task(calls()), asyncio.create_task(replies())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await ws.close()
