"""SMSSender (seed 000): `GET /?c=send_sms|get_balance&access-token=…&params={json}`.

Answers as SMSSender does: `200 {"response": "success", "code": 200}`, `{"error", "code"}`
with its numeric codes (400 for the request's mistakes, 500 for the modem's: see
SERVER_CODES), `401 {"error": "Authenticate error"}`. Like the original, `send_sms` answers
once the modem has sent the message (or failed: code 33).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from smsgw_api.compat.common import (
    FAILED_STATES,
    SENT_STATES,
    cancel_message,
    rate_limited,
    wait_for_outcome,
)
from smsgw_api.deps import AppState, StateDep, route_allowed
from smsgw_api.problems import Problem
from smsgw_api.services.ingest import SendSpec
from smsgw_shared.store.repos.keys import ApiKey

router = APIRouter(tags=["compat: SMSSender"])

PHONE_RE = re.compile(r"^(\+?7|8)\d{10}$")  # the seed's rule: (+)7 or 8, then ten digits
ASCII_LIMIT = 160
OTHER_LIMIT = 70

MESSAGES = {
    10: "command is required",
    21: "the text should not be an empty string",
    22: "The text should not be longer than 160 characters to ascii",
    23: "The text should not be longer than 70 characters for not ascii",
    30: "phone number is required",
    31: "phone number has invalid format",
    32: "payload is required",
    33: "internal modem error. The message not sended",
}


# The seed answered every error with HTTP 500. A request's own mistakes are 400 here (a
# client or proxy that retries 5xx would repeat them forever); the modem's failure (33)
# stays 500 as the seed's. The body, with its numeric code, is the seed's either way.
SERVER_CODES = frozenset({33})


class SenderError(Exception):
    """One of SMSSender's numbered errors (HTTP 400, or 500 for the modem's)."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        super().__init__(detail or MESSAGES[code])
        self.code = code
        self.detail = detail or MESSAGES[code]
        self.status = 500 if code in SERVER_CODES else 400


def _error(code: int | None, text: str, status: int = 500) -> JSONResponse:
    return JSONResponse({"error": text, "code": code}, status_code=status)


AUTH_ERROR = {"error": "Authenticate error"}


class _NotAllowed(Exception):
    """The key may not do this command: answered as an unknown token."""


def _payload(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        raise SenderError(32)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # deep nesting: RecursionError
        raise SenderError(32, "payload is required (params is not valid JSON)") from exc
    if not isinstance(data, dict):
        raise SenderError(32, "payload is required (params must be a JSON object)")
    return data


def check_sms(params: dict[str, Any]) -> tuple[str, str]:
    """(phone, text) after the seed's checks, or SenderError."""
    phone = params.get("phone")
    if phone is None or (isinstance(phone, str) and not phone.strip()):
        raise SenderError(30)
    phone = str(phone).strip()
    if not PHONE_RE.match(phone):
        raise SenderError(31)
    text = params.get("text")
    if not isinstance(text, str) or text == "":
        raise SenderError(21)
    if text.isascii() and len(text) > ASCII_LIMIT:
        raise SenderError(22)
    if not text.isascii() and len(text) > OTHER_LIMIT:
        raise SenderError(23)
    return phone, text


async def _send_sms(state: AppState, key: ApiKey, params: dict[str, Any]) -> JSONResponse:
    phone, text = check_sms(params)
    spec = SendSpec(recipients=[phone], text=text, max_parts=1)
    try:
        accepted = await state.ingestor.accept(key, spec)
    except Problem as exc:
        if exc.code == "too_many_parts":
            raise SenderError(22 if text.isascii() else 23) from exc
        if exc.code == "no_valid_recipients":
            errors = exc.extra.get("errors") or [{}]
            if errors[0].get("code") == "number_not_allowed":
                raise SenderError(31, "phone number is not allowed for this key") from exc
            raise SenderError(31) from exc
        raise SenderError(33, f"{MESSAGES[33]}: {exc.detail or exc.title}") from exc
    message_id = accepted.messages[0].id
    assert message_id is not None
    row = await wait_for_outcome(state, message_id, state.settings.compat.smssender_wait)
    status = row["status"] if row else "failed"
    if status in SENT_STATES:
        return JSONResponse({"response": "success", "code": 200})
    if status in FAILED_STATES:
        raise SenderError(33)
    # Still waiting for the modem: take it back if we can, so a client that retries after
    # this error does not send the text twice.
    canceled, now = await cancel_message(state, message_id)
    if not canceled and now in SENT_STATES:
        return JSONResponse({"response": "success", "code": 200})
    if canceled:
        raise SenderError(33, f"{MESSAGES[33]} (the modem did not send it in time)")
    raise SenderError(
        33, f"{MESSAGES[33]} (not confirmed in time; it is {now} and may still be sent)"
    )


async def _balance(state: AppState, key: ApiKey, params: dict[str, Any]) -> JSONResponse:
    modem = str(params.get("modem") or state.settings.compat.smssender_balance_modem or "")
    if not modem:
        if not state.settings.modems:
            raise SenderError(33, "internal modem error: no modem is configured")
        modem = state.settings.modems[0].id
    # As `GET /v1/modems/{id}/balance`: the `modems` scope, and a route-limited key's own
    # modems only. The seed had one answer for a token that may not: 401.
    if not key.has_scope("modems") or not route_allowed(state, key, f"modem:{modem}"):
        raise _NotAllowed
    try:
        reply = await state.rpc.modem(modem, "balance", None, state.settings.api.rpc_timeout)
    except Problem as exc:
        raise SenderError(33, f"internal modem error: {exc.detail or exc.title}") from exc
    if not reply.ok:
        raise SenderError(33, f"internal modem error: {reply.error or reply.raw or 'no answer'}")
    body: dict[str, Any] = {
        "response": float(reply.amount) if reply.amount is not None else (reply.raw or ""),
        "code": 200,
        "currency": reply.currency,
        "raw": reply.raw,
    }
    return JSONResponse(body)


@router.get("/", summary="SMSSender: send_sms, get_balance", include_in_schema=True)
async def smssender(request: Request, state: StateDep) -> JSONResponse:
    """`?c=<command>&access-token=<key>&params=<json>` (the token's name is configurable)."""
    query = request.query_params
    token = query.get(state.settings.compat.smssender_key_param, "")
    key = await state.key_cache.by_secret(token) if token else None
    if key is None or not key.has_scope("send"):
        return JSONResponse(AUTH_ERROR, status_code=401)
    limited = rate_limited(state, key)
    if limited is not None:
        return JSONResponse(
            {"error": limited.detail, "code": 429}, status_code=429, headers=limited.headers
        )
    command = query.get("c")
    try:
        if not command:
            raise SenderError(10)
        if command == "send_sms":
            return await _send_sms(state, key, _payload(query.get("params")))
        if command == "get_balance":
            raw = query.get("params")
            return await _balance(state, key, _payload(raw) if raw else {})
    except SenderError as exc:
        return _error(exc.code, exc.detail, exc.status)
    except _NotAllowed:
        return JSONResponse(AUTH_ERROR, status_code=401)
    return _error(None, f"SmsHandler instance has no attribute '{command}'", 400)
