"""What each compatible API takes and answers, for the OpenAPI document.

The compat handlers read their raw query and body themselves (charsets, repeated names,
the seeds' own error answers), so FastAPI cannot see their parameters or answers: they are
written down here, in each seed's own shapes. `openapi.complete` puts them in the document
and adds what the server answers for any operation (413, 431, malformed HTTP, the store).
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
TEXT = "text/plain"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_SENDER_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "code": {"type": "integer", "nullable": True}},
    "required": ["error", "code"],
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


def _answer(
    description: str,
    media: str = JSON,
    schema: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {media: {"schema": schema or ({"type": "string"} if media == TEXT else {})}},
    }
    if headers:
        out["headers"] = headers
    return out


def _query(*names: str, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "query", "required": n in required, "schema": {"type": "string"}}
        for n in names
    ]


def _form(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {n: {"type": "string"} for n in names},
        "required": list(required),
    }
    return {"content": {FORM: {"schema": schema}, MULTIPART: {"schema": schema}}}


# SMSSender (seed 000)
_SMSSENDER: dict[str, Any] = {
    "parameters": _query("c", "access-token", "params"),
    "responses": {
        "200": _answer("Sent (the modem took it), or the balance", schema={"type": "object"}),
        "400": _answer(
            "The request's mistake: the seed's numeric code (10, 21-23, 30-32; null for an"
            " unknown command)",
            schema=_SENDER_ERROR,
        ),
        "401": _answer("No, wrong or revoked token, or no `send` scope", schema=_ERROR),
        "429": _answer("Over the key's rate", schema=_SENDER_ERROR, headers=_RETRY_AFTER),
        "500": _answer("33: the modem failed or did not send in time", schema=_SENDER_ERROR),
    },
}

# smstools-http-api (seed 001)
_SMSTOOLS_ERRORS: dict[str, Any] = {
    "401": _answer(
        "Basic auth missing or wrong",
        schema=_ERROR,
        headers={"WWW-Authenticate": {"description": "Basic", "schema": {"type": "string"}}},
    ),
    "403": _answer("The key lacks the scope (`send` to send, `read` to look up)", schema=_ERROR),
    "429": _answer("Over the key's rate", schema=_ERROR, headers=_RETRY_AFTER),
}
_SMSTOOLS_SEND = {
    "201": _answer("An id per mobile (or `Not valid` / `Forbidden`)", schema={"type": "object"}),
    "400": _answer(
        "Request error: no text or mobiles, not JSON, over api.max_recipients", schema=_ERROR
    ),
    **_SMSTOOLS_ERRORS,
}
_SMSTOOLS_READ = {
    "200": _answer("The message, or the ids of a spool", schema={"type": "object"}),
    "404": _answer("No such message (of this key), or not in that spool", schema=_ERROR),
    **_SMSTOOLS_ERRORS,
}
_SMSTOOLS_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "mobiles": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["text", "mobiles"],
            }
        }
    },
}

# sms-api-server (seed 003): plain-text errors, as Go's http.Error
_SAS_ERRORS = {
    "400": _answer("A form check failed, or smsgw refuses the request", TEXT),
    "401": _answer("No key", TEXT),
    "403": _answer("The key lacks the scope", TEXT),
    "429": _answer("Over the key's rate", TEXT, headers=_RETRY_AFTER),
    "503": _answer("The store is unavailable", TEXT, headers=_RETRY_AFTER),
}
_SAS_SEND_FIELDS = ("src", "dst", "text", "enc", "register")

# SMStele (seed 004): every answer is 200, errors carry a negative code
_TELE_ANSWER = {
    "200": _answer('Results, or `{"error": "-NN", "description"}`', schema={"type": "object"}),
}
_TELE_FIELDS = (
    "login",
    "psw",
    "phones",
    "mes",
    "sender",
    "id",
    "phone",
    "hlr",
    "flash",
    "translit",
    "validity",
    "deferred",
    "priority",
    "charset",
)

# (method, path) → what replaces FastAPI's guess: parameters, requestBody, responses.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/"): _SMSSENDER,
    ("get", "/api/v1.0/sms/outgoing"): {
        "parameters": _query("mobiles", "text"),
        "responses": _SMSTOOLS_SEND,
    },
    ("post", "/api/v1.0/sms/outgoing"): {
        "requestBody": _SMSTOOLS_BODY,
        "responses": _SMSTOOLS_SEND,
    },
    ("get", "/api/v1.0/sms/{kind}/"): {"responses": _SMSTOOLS_READ},
    ("get", "/api/v1.0/sms/{kind}/{message_id}"): {"responses": _SMSTOOLS_READ},
    ("post", "/v1/send"): {
        "requestBody": _form(*_SAS_SEND_FIELDS, required=("dst", "text")),
        "responses": {"200": _answer('`{"message_id"}`', schema={"type": "object"})} | _SAS_ERRORS,
    },
    ("get", "/v1/query"): {
        "parameters": _query("src", "message_id", required=("message_id",)),
        "responses": {
            "200": _answer("`message_state`, `final_date`", schema={"type": "object"}),
            "404": _answer("Not one of this key's messages", TEXT),
        }
        | _SAS_ERRORS,
    },
    ("get", "/v1/sse"): {
        "responses": {"200": _answer("Incoming SMS and receipts", "text/event-stream")}
        | {k: v for k, v in _SAS_ERRORS.items() if k != "400"},
    },
}
for _path in ("/cgi-bin/sendsms", "/cgi-bin/status"):
    OPERATIONS[("get", _path)] = {"parameters": _query(*_TELE_FIELDS), "responses": _TELE_ANSWER}
    OPERATIONS[("post", _path)] = {
        "requestBody": {"content": {FORM: _form(*_TELE_FIELDS)["content"][FORM]}},
        "responses": _TELE_ANSWER,
    }

# Security: how each compatible API presents a key (SMSSender and SMStele: parameters).
SECURITY: dict[str, list[str]] = {
    "/api/v1.0/sms/": ["basic"],
    "/v1/": ["bearer", "apiKey", "basic"],
}
