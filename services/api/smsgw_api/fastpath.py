"""`POST /v1/messages` without the framework: the one route that carries the load.

Under load, FastAPI's routing, dependency solving and request/response objects cost about
as much CPU per request as accepting the message itself (py-spy: ~35 % of the API process
at 1,200 requests/s on 2 cores). This ASGI middleware answers the common case — a JSON
body — itself, with the same key check, validation, problem details and outcome as the
route in `routes/messages.py`: both end in `submit_send`. Anything else (another content
type, another path) goes on to the app unchanged, so the route stays the reference
behaviour and the OpenAPI document is generated from it.

It sits inside the metrics and body-limit middleware (and CORS, when configured), so those
apply to it as to any route.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from smsgw_api.deps import AppState, authorize
from smsgw_api.problems import (
    DATA_ERRORS,
    PROBLEM_JSON,
    STORE_ERRORS,
    Problem,
    store_problem,
    validation_problem,
)
from smsgw_api.routes.messages import SendAnswer, submit_send
from smsgw_api.schemas import SendRequest

log = logging.getLogger(__name__)

PATH = "/v1/messages"
_JSON = b"application/json"
_PROBLEM = PROBLEM_JSON.encode()
IDEMPOTENCY_KEY_MAX = 255  # as the route's `Header(max_length=255)`


class _Route:
    """What the metrics middleware reads from `scope["route"]` (Starlette puts the matched
    route there): the route template, for the `route` label."""

    path = PATH


_ROUTE = _Route()


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None if the client went away (the body limit middleware outside
    this one refuses an oversized body while it is read)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: Any, headers: dict[str, str] | None, media_type: bytes
) -> None:
    # As Starlette's JSONResponse renders it.
    payload = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    data = payload.encode()
    raw = [(b"content-type", media_type), (b"content-length", str(len(data)).encode())]
    if headers:
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class SendFastPath:
    """Answers JSON `POST /v1/messages` directly; passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        try:
            answer = await self._accept(scope, receive)
        except Problem as exc:
            failure = exc
        except (*STORE_ERRORS, *DATA_ERRORS) as exc:
            failure = store_problem(exc)
            if failure.status == 503:
                log.warning("store error on %s: %r", PATH, exc)
        else:
            if answer is not None:
                await _respond(send, answer.status, answer.body, answer.headers, _JSON)
            return
        await _respond(send, failure.status, failure.body(PATH), failure.headers, _PROBLEM)

    async def _accept(self, scope: Scope, receive: Receive) -> SendAnswer | None:
        """The route's answer, or None if the client went away; errors raised as `Problem`."""
        state: AppState = scope["app"].state.smsgw
        conn = HTTPConnection(scope)
        key = await authorize(conn, state, "send")
        raw = await _read_body(receive)
        if raw is None:
            return None
        idempotency_key = conn.headers.get("idempotency-key")
        if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
            raise validation_problem(
                [
                    {
                        "loc": ("header", "idempotency-key"),
                        "msg": f"String should have at most {IDEMPOTENCY_KEY_MAX} characters",
                    }
                ]
            )
        if not raw:  # FastAPI's answer to no body at all: the body is a required field
            raise validation_problem([{"loc": ("body",), "msg": "Field required"}])
        try:
            body = SendRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise validation_problem(exc.errors()) from None
        return await submit_send(state, key, body, idempotency_key)
