"""The ops commands' HTTP client and output helpers (`smsgw_cli.ops`).

The client talks to a gateway's API (so the commands work against a remote one): the URL
from `--url` or `SMSGW_API_URL`, the key from `--key` or `SMSGW_API_KEY`; failures become
`OpsError` with the command's exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 1, 2, 3, 4


class OpsError(Exception):
    """A message for the operator and the exit code it means."""

    def __init__(
        self, message: str, code: int = EXIT_ERROR, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.problem = problem or {}  # the API's problem details, when it answered one


def fail(message: str, code: int = EXIT_ERROR, problem: dict[str, Any] | None = None) -> NoReturn:
    raise OpsError(message, code, problem)


class Api:
    """A small client of one gateway's /v1 API, turning failures into `OpsError`s."""

    def __init__(self, args: argparse.Namespace) -> None:
        import httpx

        self.url = (args.url or os.environ.get("SMSGW_API_URL") or DEFAULT_URL).rstrip("/")
        key = args.key or os.environ.get("SMSGW_API_KEY") or ""
        if not key.strip():
            fail("no API key: pass --key or set SMSGW_API_KEY", EXIT_USAGE)
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key.strip()}", "User-Agent": "smsgw-cli"},
            timeout=httpx.Timeout(args.timeout, connect=min(args.timeout, 10.0)),
        )

    def close(self) -> None:
        self.http.close()

    def unreachable(self, exc: Exception) -> NoReturn:
        fail(
            f"cannot reach the API at {self.url} ({type(exc).__name__}: {exc or 'no answer'});"
            " is it running? (set --url or SMSGW_API_URL)",
            EXIT_UNREACHABLE,
        )

    def check(self, r: httpx.Response) -> None:
        """Raise an `OpsError` for an error answer (problem details read when given)."""
        if r.status_code < 400:
            return
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = body.get("code", "")
        detail = body.get("detail") or body.get("title") or r.reason_phrase
        if r.status_code == 401:
            fail(
                f"the API at {self.url} refused the key (401 {code or 'unauthorized'}):"
                " check --key or SMSGW_API_KEY",
                EXIT_REFUSED,
            )
        if r.status_code == 403:
            fail(f"not allowed (403 {code}): {detail}", EXIT_REFUSED)
        fail(
            f"{r.request.method} {r.request.url.path}: {r.status_code} {code}: {detail}",
            problem=body,
        )

    def request(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            self.unreachable(exc)
        self.check(r)
        return r.json() if r.content else None


# -- output helpers -------------------------------------------------------------------------


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def since(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(ts)).total_seconds()
    except ValueError:
        return None


def dump(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def table(rows: list[list[str]], out: TextIO = sys.stdout) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        out.write("\n")
