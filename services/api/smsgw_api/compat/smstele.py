"""SMStele HTTP protocol (seed 004): `/cgi-bin/sendsms` and `/cgi-bin/status` (also spelt
`/cgibin/…`), GET or POST, `login`/`psw` = a key's name and secret.

Every value in its answers is a string; errors are `{"error": "-NN", "description": …}`.
Parameters arrive percent-encoded in `charset` (windows-1251 unless told), so the raw query
and body bytes are decoded here, not by the framework. Where the seed's error table and its
examples disagree (missing `phones` is -24 and empty `phones` -25 in the examples, -25 and
-26 in the table) the examples win: see docs/compat.md.
"""

from __future__ import annotations

import logging
import re
import uuid
import zoneinfo
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from smsgw_api.compat.common import rate_limited, raw_params
from smsgw_api.compat.numbering import lookup
from smsgw_api.deps import AppState, StateDep
from smsgw_api.problems import Problem
from smsgw_api.services.ingest import SendSpec
from smsgw_shared.sms.charsets import decode_text, normalize_charset
from smsgw_shared.sms.errors import CharsetError, InvalidNumberError
from smsgw_shared.sms.phone import normalize_number
from smsgw_shared.store.repos.keys import ApiKey
from smsgw_shared.store.repos.messages import MessageFilter

log = logging.getLogger(__name__)

router = APIRouter(tags=["compat: SMStele"])

# The seed's codes (REXSMSCE_*), as used here.
SYSERR, NOMEMORY, NYI = -1, -2, -6
MISSING_LOGIN, MISSING_PASSWORD, INVALID_LOGIN = -21, -22, -23
MISSING_PHONES, EMPTY_PHONES, INVALID_DESTINATION = -24, -25, -26  # per the examples
MISSING_TEXT, INVALID_VALIDITY, INVALID_DEFERRED, INVALID_PRIORITY = -27, -28, -29, -30
INVALID_SENDER, SENDER_NOT_ALLOWED, INVALID_CHARSET = -31, -32, -33
MISSING_MESSAGE_ID, INVALID_MESSAGE_ID = -34, -35
TOO_LONG_TEXT, TOO_MANY_SEGMENTS = -41, -42

IN_PROGRESS = "-99"  # what the seed shows in `status`/`error` of every accepted message
VALIDITY_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600}
VALIDITY_RANGE = (60, 7 * 86400)  # seconds, as the native API
DEFERRED_FORMAT = "%Y-%m-%d %H:%M:%S"

# Message state → the SMPP receipt `stat:` word the status query shows.
STAT = {
    "scheduled": "ENROUTE",
    "queued": "ENROUTE",
    "sending": "ENROUTE",
    "sent": "ENROUTE",
    "delivered": "DELIVRD",
    "undelivered": "UNDELIV",
    "partially_delivered": "UNDELIV",
    "failed": "UNDELIV",
    "expired": "EXPIRED",
    "rejected": "REJECTD",
    "canceled": "DELETED",
}


class TeleError(Exception):
    """A refused request: negative code and description."""

    def __init__(self, code: int, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": str(self.code), "description": self.description}
        return JSONResponse(body, headers=self.headers)


def _invalid(name: str, value: str) -> str:
    return f"Invalid attribute: '{name}={value}'"


def _missing(name: str) -> str:
    return f"Missing attribute: '{name}'"


async def _params(request: Request) -> tuple[dict[str, str], str | None]:
    """Decoded parameters and, if decoding failed, the -33 description."""
    pairs = await raw_params(request)
    raw_charset = ""
    for raw_name, raw_value in pairs:
        if raw_name == b"charset":
            raw_charset = raw_value.decode("latin-1").strip()
    try:
        charset = normalize_charset(raw_charset or "windows-1251")
    except CharsetError:
        latin = {n.decode("latin-1"): v.decode("latin-1") for n, v in pairs}
        return latin, _invalid("charset", raw_charset)
    params: dict[str, str] = {}
    problem = None
    for raw_name, raw_value in pairs:
        field = raw_name.decode("latin-1")
        try:
            params[field] = decode_text(raw_value, charset)
        except CharsetError:
            params[field] = raw_value.decode("latin-1")
            problem = problem or f"Invalid attribute: '{field}' is not valid {charset}"
    return params, problem


async def _login(state: AppState, params: dict[str, str], scope: str) -> ApiKey:
    login, psw = params.get("login", ""), params.get("psw", "")
    if not login:
        raise TeleError(MISSING_LOGIN, "No login")
    if not psw:
        raise TeleError(MISSING_PASSWORD, "No password")
    key = await state.key_cache.by_name_and_secret(login, psw)
    if key is None or not key.has_scope(scope):
        raise TeleError(INVALID_LOGIN, "Invalid login or password")
    limited = rate_limited(state, key)
    if limited is not None:
        raise TeleError(SYSERR, f"Rate limit exceeded: {limited.detail}", limited.headers)
    return key


def _client_id(state: AppState, params: dict[str, str]) -> str | None:
    cid = params.get("id")
    if cid and len(cid) > state.settings.compat.smstele_max_id_length:
        raise TeleError(INVALID_MESSAGE_ID, _invalid("id", cid))
    return cid or None


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "").strip() == "1"


def _int(params: dict[str, str], name: str, code: int, lo: int, hi: int) -> int | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"\d{1,9}", raw) or not lo <= int(raw) <= hi:
        raise TeleError(code, _invalid(name, raw))
    return int(raw)


def _zone(state: AppState) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(state.settings.compat.smstele_timezone)


def _stamp(value: datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    """`2018-06-04 18:41:09+03` (minutes only when the offset has them)."""
    if value is None:
        return ""
    local = value.astimezone(zone)
    offset = local.strftime("%z")  # +0300
    tail = offset[:3] if offset.endswith("00") else f"{offset[:3]}:{offset[3:]}"
    return local.strftime(DEFERRED_FORMAT) + tail


def _phones(params: dict[str, str]) -> list[str]:
    if "phones" not in params:
        raise TeleError(MISSING_PHONES, _missing("phones"))
    phones = [p.strip() for p in re.split(r"[,;]", params["phones"]) if p.strip()]
    if not phones:
        raise TeleError(EMPTY_PHONES, _invalid("phones", params["phones"]))
    return phones


def _entry(cid: str, phone: str, status: str, cnt: int, e164: str | None) -> dict[str, str]:
    info = lookup(e164) if e164 else None
    return {
        "id": cid,
        "phone": phone,
        "status": status,
        "error": status,
        "cnt": str(cnt),
        "operator": info.operator if info else "",
        "region": info.region if info else "",
        "mnc": info.mnc if info else "",
    }


def _hlr(state: AppState, cid: str, phones: list[str]) -> dict[str, Any]:
    """Numbering-plan answers for `hlr=1` (no SMS is sent)."""
    messages = []
    for phone in phones:
        try:
            e164 = normalize_number(phone, state.settings.api.default_region)
        except InvalidNumberError:
            messages.append(_entry(cid, phone, str(INVALID_DESTINATION), 0, None))
            continue
        messages.append(_entry(cid, e164.lstrip("+"), "0", 1, e164))
    ok = sum(1 for m in messages if m["status"] == "0")
    return {"id": cid, "cnt": str(ok), "messages": messages}


def _spec(state: AppState, params: dict[str, str], phones: list[str], cid: str) -> SendSpec:
    mes = params.get("mes", "")
    if not mes:
        raise TeleError(MISSING_TEXT, _missing("mes"))
    if len(mes) > state.settings.compat.smstele_max_text_length:
        limit = state.settings.compat.smstele_max_text_length
        raise TeleError(TOO_LONG_TEXT, f"Too long text: {len(mes)} characters, limit {limit}")
    validity = _int(params, "validity", INVALID_VALIDITY, 1, 10**9)
    if validity is not None:
        validity *= VALIDITY_UNITS[state.settings.compat.smstele_validity_unit]
        if not VALIDITY_RANGE[0] <= validity <= VALIDITY_RANGE[1]:
            raise TeleError(INVALID_VALIDITY, _invalid("validity", params["validity"].strip()))
    send_at = None
    if params.get("deferred", "").strip():
        raw = params["deferred"].strip()
        try:
            send_at = datetime.strptime(raw, DEFERRED_FORMAT).replace(tzinfo=_zone(state))
        except ValueError as exc:
            raise TeleError(INVALID_DEFERRED, _invalid("deferred", raw)) from exc
    _int(params, "priority", INVALID_PRIORITY, 0, 3)
    return SendSpec(
        recipients=phones,
        text=mes,
        sender=params.get("sender") or None,
        flash=_flag(params, "flash"),
        validity=validity,
        send_at=send_at,
        reference=cid,
        translit=_flag(params, "translit"),
    )


def _refusal(exc: Problem, spec: SendSpec) -> TeleError:
    """An ingest problem in SMStele's terms."""
    code = {
        "too_many_parts": TOO_MANY_SEGMENTS,
        "unencodable_text": TOO_LONG_TEXT,
        "invalid_text": MISSING_TEXT,
        "invalid_sender": INVALID_SENDER,
        "sender_not_allowed": SENDER_NOT_ALLOWED,
        "no_valid_recipients": INVALID_DESTINATION,
        "too_many_recipients": NOMEMORY,
    }.get(exc.code, SYSERR)
    if code in (INVALID_SENDER, SENDER_NOT_ALLOWED):
        return TeleError(code, f"{_invalid('sender', spec.sender or '')}: {exc.detail}")
    if code == INVALID_DESTINATION:
        return TeleError(code, f"Invalid destination address: {exc.detail}")
    return TeleError(code, exc.detail or exc.title)


async def _sendsms(state: AppState, params: dict[str, str]) -> dict[str, Any]:
    key = await _login(state, params, "send")
    cid = _client_id(state, params)
    _int(params, "viber_validity", INVALID_VALIDITY, 0, 86400)
    if _flag(params, "viber"):
        raise TeleError(NYI, "Not implemented: 'viber=1'")
    phones = _phones(params)
    limit = state.settings.api.max_recipients
    if len(phones) > limit:  # before any per-number work (hlr=1 too)
        raise TeleError(NOMEMORY, f"Too many phones: {len(phones)}, the limit is {limit}")
    cid = cid or uuid.uuid4().hex
    if _flag(params, "hlr"):
        return _hlr(state, cid, phones)
    spec = _spec(state, params, phones, cid)
    try:
        accepted = await state.ingestor.accept(key, spec)
    except Problem as exc:
        raise _refusal(exc, spec) from exc
    messages = []
    for phone, outcome in zip(phones, accepted.messages, strict=True):
        if outcome.id is None:
            entry = _entry(cid, phone, str(INVALID_DESTINATION), outcome.parts, None)
        else:
            entry = _entry(cid, outcome.to.lstrip("+"), IN_PROGRESS, outcome.parts, outcome.to)
        messages.append(entry)
    ok = sum(1 for m in accepted.messages if m.id is not None)
    return {"id": cid, "cnt": str(ok), "messages": messages}


def _result(m: dict[str, Any], zone: zoneinfo.ZoneInfo) -> dict[str, str]:
    info = lookup(m["to_number"])
    return {
        "id": m["reference"] or str(m["id"]),
        "phone": m["to_number"].lstrip("+"),
        "sender": m["sender"] or "",
        "status": IN_PROGRESS,
        "err": IN_PROGRESS,
        "stat": STAT.get(m["status"], "UNKNOWN"),
        "type": "1",  # SMS
        "send_timestamp": _stamp(m["sent_at"] or m["created_at"], zone),
        "last_timestamp": _stamp(m["done_at"] or m["updated_at"], zone),
        "operator": info.operator,
        "region": info.region,
        "mnc": info.mnc,
    }


async def _status(state: AppState, params: dict[str, str]) -> dict[str, Any]:
    key = await _login(state, params, "read")
    cid = _client_id(state, params)
    phone = params.get("phone", "").strip()
    if not cid and not phone:
        raise TeleError(MISSING_MESSAGE_ID, _missing("id"))
    to = None
    if phone:
        try:
            to = normalize_number(phone, state.settings.api.default_region)
        except InvalidNumberError as exc:
            raise TeleError(INVALID_DESTINATION, _invalid("phone", phone)) from exc
    flt = MessageFilter(reference=cid, to=to, api_key_id=None if "admin" in key.scopes else key.id)
    rows = await state.messages.list(flt, state.settings.compat.smstele_status_limit, None)
    zone = _zone(state)
    # One request's messages share created_at: then by number, for a stable order.
    rows.sort(key=lambda m: (m["created_at"], m["to_number"]))
    return {"results": [_result(m, zone) for m in rows]}


async def _handle(request: Request, state: AppState, action: str) -> JSONResponse:
    try:
        params, charset_problem = await _params(request)
        if charset_problem is not None:
            await _login(state, params, "send" if action == "sendsms" else "read")
            raise TeleError(INVALID_CHARSET, charset_problem)
        body = await (_sendsms(state, params) if action == "sendsms" else _status(state, params))
    except TeleError as exc:
        return exc.response()
    except Exception:
        log.exception("SMStele %s failed", action)
        return TeleError(SYSERR, "System error").response()
    return JSONResponse(body)


async def sendsms(request: Request, state: StateDep) -> JSONResponse:
    """Send `mes` to `phones` (or `hlr=1`: numbering-plan lookup): per-phone results."""
    return await _handle(request, state, "sendsms")


async def status(request: Request, state: StateDep) -> JSONResponse:
    """Status of messages by client `id`, `phone`, or both."""
    return await _handle(request, state, "status")


# GET and POST, on both spellings; one operation per method keeps OpenAPI ids unique.
for _prefix in ("/cgi-bin", "/cgibin"):
    for _method in ("GET", "POST"):
        for _name, _handler in (("sendsms", sendsms), ("status", status)):
            router.add_api_route(
                f"{_prefix}/{_name}",
                _handler,
                methods=[_method],
                operation_id=f"smstele_{_name}_{_prefix.strip('/').replace('-', '_')}_{_method}",
                include_in_schema=_prefix == "/cgi-bin",
            )
