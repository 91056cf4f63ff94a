"""The OpenAPI document, completed: how to authenticate, and the problem-details answers
every native (`/v1`) operation may give, with examples.

FastAPI documents what a route declares; the failures that come from shared code (the key
check, the rate limiter, the body limit, the store) are added here once for every route.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the security schemes, the Problem schema and the common failures (keeping any
    description a route gave a status itself) to every /v1 operation."""
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES
    security: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
    for path, operations in spec.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for method, op in operations.items():
            op["security"] = security
            failures = list(_COMMON)
            if "{" in path:
                failures.append(_NOT_FOUND)
            if method in ("post", "put", "patch"):
                failures.append(_TOO_LARGE)
            if "parameters" in op or "requestBody" in op:
                failures.append(_INVALID)
            responses = op.setdefault("responses", {})
            for status, answer in responses.items():
                if status[0] in "45" and "content" not in answer:
                    schema = {"$ref": "#/components/schemas/Problem"}
                    answer["content"] = {PROBLEM_JSON: {"schema": schema}}
            for status, description, example, headers in failures:
                declared = responses.get(str(status), {})
                merged = _response(declared.get("description", description), example, headers)
                responses[str(status)] = merged
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
