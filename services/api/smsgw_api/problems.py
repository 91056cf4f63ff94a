"""RFC 9457 problem details: every error the API returns, with a stable `code`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from smsgw_shared.store.db import StoreUnavailable

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer: HTTP status, stable code, human title/detail, optional extras."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": f"https://smsgw.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
        }
        if self.detail:
            out["detail"] = self.detail
        if instance:
            out["instance"] = instance
        out.update(self.extra)
        return out


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    """The JSON response for a problem."""
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def validation_problem(raw: Sequence[Any]) -> Problem:
    """Pydantic's (or FastAPI's) validation errors as one problem: `400 malformed_json` when
    the body is not JSON, else `422 validation_error`, with each field and what is wrong."""
    errors = []
    for err in raw:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        if err.get("type") == "json_invalid":
            msg = f"malformed JSON: {err.get('ctx', {}).get('error', 'invalid')}"
        errors.append({"field": ".".join(loc), "message": msg})
    malformed = any(e.get("type") == "json_invalid" for e in raw)
    return Problem(
        400 if malformed else 422,
        "malformed_json" if malformed else "validation_error",
        "Malformed JSON body" if malformed else "The request is not valid",
        "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)[:1000],
        errors=errors,
    )


def payload_too_large(limit: int) -> Problem:
    return Problem(
        413, "payload_too_large", "Request body too large", f"the body limit is {limit} bytes"
    )


# What a store that is down or unreachable raises, through SQLAlchemy or asyncpg directly.
STORE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    DBAPIError,
    PoolTimeout,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    ConnectionError,
    OSError,
    StoreUnavailable,
)


# A value the store refuses (a NUL character in a text, a number out of range…): the
# request's fault, not the store's (SQLSTATE class 22). SQLAlchemy's asyncpg dialect may
# wrap one in a plain DBAPIError, so the chain of causes is what tells.
DATA_ERRORS: tuple[type[Exception], ...] = (DataError, asyncpg.DataError)


def _refused_value(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, DATA_ERRORS):
            return e
        orig = getattr(e, "orig", None)
        todo += [e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None]
    return None


def store_problem(exc: BaseException) -> Problem:
    """The answer to a store error: 422 for a value it refused, else 503 (unavailable)."""
    refused = _refused_value(exc)
    if refused is None:
        return store_unavailable()
    reason = str(refused).splitlines()[0][:300] if str(refused) else type(refused).__name__
    return Problem(
        422,
        "invalid_value",
        "A value cannot be stored",
        f"the store refused a value of this request: {reason}",
    )


def store_unavailable() -> Problem:
    return Problem(
        503,
        "store_unavailable",
        "Storage temporarily unavailable",
        "the message store cannot be reached; retry later",
        headers={"Retry-After": "5"},
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def install_problem_handlers(app: FastAPI) -> None:
    """Turn every error into problem details (never a bare 500 page or FastAPI's default)."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback by the server; the client gets problem details.
        problem = Problem(500, "internal_error", "Internal error", "an unexpected error")
        return problem_response(problem, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_problem(exc.errors()), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        problem = Problem(
            exc.status_code,
            code,
            str(exc.detail) if exc.detail else code.replace("_", " "),
            headers=getattr(exc, "headers", None),
        )
        return problem_response(problem, request.url.path)
