"""What every compatible API shares: keys presented in other ways, raw form parsing with a
chosen charset, waiting for a message's outcome, and cancelling one."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request

from smsgw_api.deps import AppState, enforce_rate_limit
from smsgw_api.problems import Problem
from smsgw_shared.amqp import Outgoing
from smsgw_shared.messages import CancelNotice
from smsgw_shared.store.repos.keys import ApiKey

log = logging.getLogger(__name__)

# The message has left the gateway (the modem or SMSC took it).
SENT_STATES = frozenset({"sent", "delivered", "undelivered", "partially_delivered"})
# It never will.
FAILED_STATES = frozenset({"failed", "rejected", "canceled", "expired"})

POLL_INTERVAL = 0.25  # seconds between store reads while waiting for an outcome


def rate_limited(state: AppState, key: ApiKey) -> Problem | None:
    """The 429 problem when the key is over its rate, else None. Only checks that a call
    may start: a send is charged per recipient by the ingestor, the one path every API
    accepts through."""
    try:
        enforce_rate_limit(state, key, 0)
    except Problem as exc:
        return exc
    return None


def parse_pairs(raw: bytes) -> list[tuple[bytes, bytes]]:
    """`a=1&b=%D0%9F` → [(b"a", b"1"), (b"b", b"\\xd0\\x9f")]: percent-decoded bytes, `+` as
    space, raw spaces kept (curl -d sends them as is); the charset is applied later."""
    out: list[tuple[bytes, bytes]] = []
    for chunk in raw.split(b"&"):
        if not chunk:
            continue
        name, _, value = chunk.partition(b"=")
        out.append(
            (
                unquote_to_bytes(name.replace(b"+", b" ")),
                unquote_to_bytes(value.replace(b"+", b" ")),
            )
        )
    return out


async def raw_params(request: Request) -> list[tuple[bytes, bytes]]:
    """Query string and (urlencoded) body parameters as bytes, query first."""
    pairs = parse_pairs(request.scope.get("query_string", b""))
    if request.method in {"POST", "PUT"}:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype.startswith("multipart/"):
            form = await request.form()
            for name, value in form.multi_items():
                if isinstance(value, str):
                    pairs.append((name.encode(), value.encode()))
        else:
            pairs += parse_pairs((await request.body()).strip(b"\r\n"))
    return pairs


def last_values(pairs: list[tuple[bytes, bytes]], decode: Any) -> dict[str, str]:
    """Name → decoded value; a repeated name keeps its last value (body after query)."""
    return {decode(n): decode(v) for n, v in pairs}


async def wait_for_outcome(
    state: AppState, message_id: str, timeout: float
) -> dict[str, Any] | None:
    """Poll the store until the message is sent or failed; None if it does not exist.

    Returns the stored row as it was last read (still `queued`/`sending` on timeout)."""
    mid = uuid.UUID(message_id)
    deadline = time.monotonic() + timeout
    while True:
        row = await state.messages.get(mid)
        if row is None:
            return None
        if row["status"] in SENT_STATES or row["status"] in FAILED_STATES:
            return row
        if time.monotonic() >= deadline:
            return row
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


async def cancel_message(state: AppState, message_id: str) -> tuple[bool, str | None]:
    """Cancel while scheduled/queued and tell the workers, as `DELETE /v1/messages/{id}`."""
    mid = uuid.UUID(message_id)
    ok, current = await state.messages.cancel(mid)
    if ok:
        try:
            topo = state.amqp.topology
            await state.publisher.publish(
                Outgoing(topo.events_exchange, topo.CANCEL_KEY, CancelNotice(message_id=str(mid)))
            )
        except Exception as exc:  # best effort: the store already says canceled
            log.debug("cancel notice not published: %r", exc)
    return ok, current
