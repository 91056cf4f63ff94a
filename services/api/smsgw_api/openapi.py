"""The OpenAPI document, completed: how to authenticate, the problem-details answers every
native (`/v1`) operation may give, with examples, and what the compatible APIs answer.

FastAPI documents what a route declares; the failures that come from shared code (the key
check, the rate limiter, the body limit, the store) are added here once for every route.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from smsgw_api.compat import responses as compat_responses
from smsgw_api.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; `code` is stable, match on it",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "the key's name as user, its secret as password",
    },
}


def _problem(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"https://smsgw.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }


# (status, description, example, headers) of the failures any /v1 operation may answer.
Failure = tuple[int, str, dict[str, Any], dict[str, str]]
_COMMON: list[Failure] = [
    (
        401,
        "No key, or a wrong or revoked one",
        _problem(401, "unauthorized", "Unauthorized", "a valid API key is required"),
        {},
    ),
    (
        403,
        "The key lacks the scope this operation needs",
        _problem(403, "forbidden", "Forbidden", "this key lacks the 'send' scope"),
        {},
    ),
    (
        429,
        "The key is over its rate limit",
        _problem(429, "rate_limited", "Too many requests", "rate limit of 10 requests/s"),
        {"Retry-After": "Seconds to wait"},
    ),
    (
        503,
        "The store is unreachable; retry after Retry-After",
        _problem(
            503,
            "store_unavailable",
            "Storage temporarily unavailable",
            "the message store cannot be reached; retry later",
        ),
        {"Retry-After": "Seconds to wait"},
    ),
]
_NOT_FOUND: Failure = (
    404,
    "No such object (or not visible to this key)",
    _problem(404, "message_not_found", "No such message", "no message 0193…"),
    {},
)
_TOO_LARGE: Failure = (
    413,
    "The body is over api.max_body_bytes",
    _problem(413, "payload_too_large", "Request body too large", "the body limit is 1048576"),
    {},
)
_INVALID: Failure = (
    422,
    "The request is not valid: `errors` lists each field and what is wrong",
    _problem(
        422,
        "validation_error",
        "The request is not valid",
        "text: String should have at least 1 character",
        errors=[{"field": "text", "message": "String should have at least 1 character"}],
    ),
    {},
)


def _response(description: str, example: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "example": example,
            }
        },
    }
    if headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "integer"}}
            for name, text in headers.items()
        }
    return out


# Any operation: what uvicorn's parser, the header cap and the body limit answer.
_MALFORMED: Failure = (
    400,
    "Malformed: not valid HTTP, a body that is not JSON, a cursor that is not ours",
    _problem(400, "malformed_json", "Malformed JSON body", "body: malformed JSON: EOF"),
    {},
)
_HEADERS_TOO_LARGE: Failure = (
    431,
    "The request line and headers are over api.max_header_bytes",
    _problem(
        431,
        "headers_too_large",
        "Request header fields too large",
        "the request line and headers are limited to 16384 bytes",
    ),
    {},
)
_UNAVAILABLE = _COMMON[3]
# What only some operations answer.
_SPECIFIC: dict[tuple[str, str], list[Failure]] = {
    ("post", "/v1/keys"): [
        (
            409,
            "A key with this name exists",
            _problem(409, "key_name_taken", "Key name taken", "a key named 'shop' exists"),
            {},
        )
    ],
}
_HEALTH: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/readyz"): {
        "503": {
            "description": "The broker or the store is unreachable (`failed` names which)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    ("get", "/metrics"): {
        "200": {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}


def _add(responses: dict[str, Any], failure: Failure) -> None:
    """Document a problem-details answer, beside any other content type the status has."""
    status, description, example, headers = failure
    merged = _response(description, example, headers)
    declared = responses.get(str(status))
    if declared is None:
        responses[str(status)] = merged
        return
    declared.setdefault("content", {}).setdefault(PROBLEM_JSON, merged["content"][PROBLEM_JSON])
    if headers:
        declared.setdefault("headers", {}).update(merged["headers"])


def _complete_native(path: str, method: str, op: dict[str, Any], security: Any) -> None:
    op["security"] = security
    failures = list(_COMMON)
    if "{" in path:
        failures.append(_NOT_FOUND)
    if method in ("post", "put", "patch"):
        failures.append(_TOO_LARGE)
    if "parameters" in op or "requestBody" in op:
        failures.append(_INVALID)
    failures += _SPECIFIC.get((method, path), [])
    responses = op.setdefault("responses", {})
    for status, answer in responses.items():
        if status[0] in "45" and "content" not in answer:
            schema = {"$ref": "#/components/schemas/Problem"}
            answer["content"] = {PROBLEM_JSON: {"schema": schema}}
    for status, description, example, headers in failures:
        declared = responses.get(str(status), {})
        merged = _response(declared.get("description", description), example, headers)
        responses[str(status)] = merged


def _complete_compat(path: str, method: str, op: dict[str, Any], documented: Any) -> None:
    op.update({k: v for k, v in documented.items() if k != "responses"})
    op["responses"] = {status: dict(answer) for status, answer in documented["responses"].items()}
    schemes = next((v for k, v in compat_responses.SECURITY.items() if path.startswith(k)), [])
    if schemes:
        op["security"] = [{name: []} for name in schemes]
    # A store that is down, below the seed's own handling: problem details.
    _add(op["responses"], _UNAVAILABLE)
    if method in ("post", "put", "patch"):
        _add(op["responses"], _TOO_LARGE)


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the security schemes, the Problem schema and the common failures (keeping any
    description a route gave a status itself) to every /v1 operation; the compatible APIs'
    own parameters and answers (`compat/responses.py`); and to every operation what the
    server answers for any request (malformed HTTP, headers over the cap)."""
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES
    security: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            documented = compat_responses.OPERATIONS.get((method, path))
            if documented is not None:
                _complete_compat(path, method, op, documented)
            elif path.startswith("/v1/"):
                _complete_native(path, method, op, security)
            responses = op.setdefault("responses", {})
            for status, answer in _HEALTH.get((method, path), {}).items():
                responses[status] = answer
            _add(responses, _MALFORMED)
            _add(responses, _HEADERS_TOO_LARGE)
    return spec


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (and so in /docs)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
