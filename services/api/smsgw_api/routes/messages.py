"""`/v1/messages`: send, preview, read, list, cancel."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from smsgw_api.deps import AppState, ReadKey, SendKey, StateDep
from smsgw_api.pagination import decode_cursor, encode_cursor, iso, time_range
from smsgw_api.problems import Problem
from smsgw_api.schemas import (
    MessageDetail,
    MessageList,
    PreviewRequest,
    PreviewResponse,
    SendRequest,
    SendResponse,
)
from smsgw_api.services.ingest import SendSpec
from smsgw_shared.amqp import Outgoing
from smsgw_shared.ids import uuid7_strings
from smsgw_shared.messages import CancelNotice
from smsgw_shared.messages.states import MESSAGE_STATES
from smsgw_shared.store.repos.keys import ApiKey
from smsgw_shared.store.repos.messages import MessageFilter

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/messages", tags=["messages"])


def spec_from(req: SendRequest) -> SendSpec:
    """The native request as the ingest path's `SendSpec`."""
    return SendSpec(
        recipients=req.recipients(),
        text=req.text,
        sender=req.from_,
        route=req.route,
        encoding=req.encoding,
        substitute=req.substitute,
        flash=req.flash,
        validity=req.validity,
        send_at=req.send_at,
        status_callback=str(req.status_callback) if req.status_callback else None,
        reference=req.reference,
        translit=req.translit,
        dlr=req.dlr,
    )


@router.post(
    "",
    status_code=202,
    response_model=SendResponse,
    summary="Send an SMS to one or many recipients",
    responses={
        409: {"description": "Idempotency-Key reused with a different body"},
        422: {"description": "Invalid request, or every recipient invalid"},
        503: {"description": "Store unavailable (retry after Retry-After)"},
    },
)
async def send(
    body: SendRequest,
    key: SendKey,
    state: StateDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Any:
    """Accept a message; `202` once it is stored (it is then never lost)."""
    answer = await submit_send(state, key, body, idempotency_key)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


@dataclass(frozen=True)
class SendAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None


async def submit_send(
    state: AppState, key: ApiKey, body: SendRequest, idempotency_key: str | None
) -> SendAnswer:
    """`POST /v1/messages` once the caller and the body are known (the route above and the
    fast path in `smsgw_api.fastpath` both end here); errors are raised as `Problem`."""
    if body.send_at is not None and body.send_at.tzinfo is None:
        raise Problem(
            422,
            "invalid_send_at",
            "send_at needs a timezone",
            "use RFC 3339 with an offset, e.g. 2026-01-01T10:00:00Z",
        )
    if idempotency_key is None:
        result = await state.ingestor.accept(key, spec_from(body))
        return SendAnswer(202, result.as_dict())
    digest = hashlib.sha256(body.model_dump_json(by_alias=True).encode()).hexdigest()
    batch_id = uuid7_strings(1)[0]
    record = await state.idempotency.claim(
        key.id, idempotency_key, digest, state.settings.api.idempotency_ttl, batch_id
    )
    if record is not None:
        if record.request_hash != digest:
            raise Problem(
                409,
                "idempotency_conflict",
                "Idempotency-Key reused",
                "this key was used with a different request body",
            )
        if record.status_code is not None:
            return SendAnswer(record.status_code, record.response, REPLAYED)
        if record.age < CLAIM_ABANDONED_AFTER_S:
            raise _in_progress()
        # The request that claimed the key never finished: its process died, or the store
        # failed after the commit. What it stored is its answer; if nothing, this one
        # takes its place.
        answer = await _abandoned_answer(state, record.batch_id)
        if answer is not None:
            await state.idempotency.complete(key.id, idempotency_key, 202, answer)
            return SendAnswer(202, answer, REPLAYED)
        if not await state.idempotency.retake(key.id, idempotency_key, record.batch_id, batch_id):
            raise Problem(
                409,
                "idempotency_in_progress",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed",
                headers={"Retry-After": "1"},
            )
    try:
        result = await state.ingestor.accept(key, spec_from(body), batch_id)
    except Problem as exc:
        if exc.status in {403, 422}:
            await state.idempotency.complete(
                key.id, idempotency_key, exc.status, exc.body("/v1/messages")
            )
        else:
            await state.idempotency.release(key.id, idempotency_key)
        raise
    except BaseException:
        await state.idempotency.release(key.id, idempotency_key)
        raise
    answer = result.as_dict()
    await state.idempotency.complete(key.id, idempotency_key, 202, answer)
    return SendAnswer(202, answer)


# An idempotent send unfinished this long after its claim is taken as abandoned: the
# accept path gives up well before (2 s for room to publish, 30 s a statement).
CLAIM_ABANDONED_AFTER_S = 60.0
REPLAYED = {"Idempotent-Replayed": "true"}


def _in_progress() -> Problem:
    return Problem(
        409,
        "idempotency_in_progress",
        "Request in progress",
        "a request with this Idempotency-Key is still being processed",
        headers={"Retry-After": "1"},
    )


async def _abandoned_answer(state: AppState, batch_id: str | None) -> dict[str, Any] | None:
    """The answer of an abandoned request from the messages it stored (their current
    status; recipients it rejected were not stored), or None if it stored none."""
    if batch_id is None:
        return None
    stored = await state.messages.in_batch(batch_id)
    if not stored:
        return None
    return {
        "batch_id": batch_id,
        "messages": [
            {
                "id": str(m["id"]),
                "to": m["to_number"],
                "status": m["status"],
                "parts": m["parts_count"],
                "encoding": m["encoding"],
                "route": m["route"],
            }
            for m in stored
        ],
    }


@router.post("/preview", response_model=PreviewResponse, summary="Parts and encoding of a text")
async def preview(body: PreviewRequest, key: SendKey, state: StateDep) -> PreviewResponse:
    """How many parts, which encoding — without sending (like Jasmin's /rate)."""
    spec = SendSpec(
        [], body.text, encoding=body.encoding, substitute=body.substitute, translit=body.translit
    )
    text, _, _ = state.ingestor.prepare_text(spec)
    from smsgw_shared.sms.segment import preview as pv

    p = pv(text, body.encoding, body.substitute, state.settings.api.max_parts)
    return PreviewResponse(
        encoding=p.encoding.value,
        parts=p.parts,
        units=p.units,
        units_per_part=p.units_per_part,
        remaining=p.remaining,
        ucs2_chars=list(p.ucs2_chars),
        text=text,
    )


def message_view(m: dict[str, Any], detail: bool = False) -> dict[str, Any]:
    """The public JSON of a stored message."""
    out: dict[str, Any] = {
        "id": str(m["id"]),
        "batch_id": str(m["batch_id"]),
        "to": m["to_number"],
        "from": m["sender"],
        "text": m["text"],
        "status": m["status"],
        "encoding": m["encoding"],
        "parts": m["parts_count"],
        "route": m["route"],
        "reference": m["reference"],
        "error_code": m["error_code"],
        "error": m["error"],
        "flash": m["flash"],
        "validity": m["validity"],
        "send_at": iso(m["send_at"]),
        "created_at": iso(m["created_at"]),
        "updated_at": iso(m["updated_at"]),
        "sent_at": iso(m["sent_at"]),
        "done_at": iso(m["done_at"]),
    }
    if detail:
        out["parts_detail"] = [
            {
                "index": p["idx"],
                "status": p["status"],
                "route": p["route"],
                "provider_id": p["provider_id"],
                "error_code": p["error_code"],
                "submitted_at": iso(p["submitted_at"]),
                "updated_at": iso(p["updated_at"]),
            }
            for p in m.get("parts_detail", [])
        ]
        out["history"] = [
            {
                "state": h["state"],
                "part": h["part"],
                "source": h["source"],
                "error_code": h["error_code"],
                "detail": h["detail"],
                "at": iso(h["occurred_at"]),
                "reported_at": iso(h["reported_at"]),
            }
            for h in m.get("history", [])
        ]
    return out


def _parse_id(message_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(message_id)
    except ValueError as exc:
        raise Problem(
            404, "message_not_found", "No such message", f"{message_id!r} is not a message id"
        ) from exc


def _visible(key: ApiKey, m: dict[str, Any]) -> bool:
    return "admin" in key.scopes or m.get("api_key_id") in (None, key.id)


@router.get(
    "/{message_id}", response_model=MessageDetail, summary="A message with parts and history"
)
async def get_message(message_id: str, key: ReadKey, state: StateDep) -> dict[str, Any]:
    """State, parts with provider ids, state history and error of one message. Each history
    line has `at` (when it happened; the order of the history) and `reported_at` (the time
    its report gave, e.g. an SMSC receipt's minute-resolution done date; null if none)."""
    m = await state.messages.get(_parse_id(message_id))
    if m is None or not _visible(key, m):
        raise Problem(404, "message_not_found", "No such message", f"no message {message_id}")
    return message_view(m, detail=True)


@router.get(
    "",
    response_model=MessageList,
    summary="List messages (newest first, cursor pagination)",
)
async def list_messages(
    key: ReadKey,
    state: StateDep,
    request: Request,
    status: str | None = None,
    to: str | None = None,
    reference: str | None = None,
    batch_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Filter by status, recipient, reference, batch and time range."""
    time_range(since, until)
    if status is not None and status not in MESSAGE_STATES:
        raise Problem(
            422,
            "invalid_status",
            "Unknown status",
            f"status must be one of {', '.join(sorted(MESSAGE_STATES))}",
        )
    if to is not None:
        from smsgw_shared.sms.errors import InvalidNumberError
        from smsgw_shared.sms.phone import normalize_number

        try:
            to = normalize_number(to, state.settings.api.default_region)
        except InvalidNumberError as exc:
            raise Problem(422, "invalid_number", "Invalid number", str(exc)) from exc
    flt = MessageFilter(
        status=status,
        to=to,
        reference=reference,
        batch_id=batch_id,
        since=since,
        until=until,
        api_key_id=None if "admin" in key.scopes else key.id,
    )
    rows = await state.messages.list(flt, limit + 1, decode_cursor(cursor) if cursor else None)
    page = rows[:limit]
    nxt = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    return {"data": [message_view(m) for m in page], "next_cursor": nxt}


@router.delete("/{message_id}", summary="Cancel a scheduled or queued message")
async def cancel(message_id: str, key: SendKey, state: StateDep) -> dict[str, Any]:
    """Cancel while scheduled or queued; `409` once it is being sent."""
    mid = _parse_id(message_id)
    m = await state.messages.get(mid)
    if m is None or not _visible(key, m):
        raise Problem(404, "message_not_found", "No such message", f"no message {message_id}")
    ok, current = await state.messages.cancel(mid)
    if not ok:
        raise Problem(
            409,
            "not_cancelable",
            "Too late to cancel",
            f"the message is {current}",
            message_status=current,
        )
    # Tell the workers, in case the job is already in a queue (best effort: a worker that
    # misses it finds the message canceled in the store's projection anyway).
    try:
        topo = state.amqp.topology
        await state.publisher.publish(
            Outgoing(topo.events_exchange, topo.CANCEL_KEY, CancelNotice(message_id=str(mid)))
        )
    except Exception as exc:
        log.debug("cancel notice not published: %r", exc)
    return {"id": str(mid), "status": "canceled"}
