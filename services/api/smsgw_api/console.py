"""The operator console: `/console`, a static page (HTML, CSS, one script; no build step,
nothing from elsewhere) that signs in with an API key and uses the /v1 API like any client.

Served with a strict Content-Security-Policy: only this origin's script and stylesheet,
API calls to this origin, no inline script or style, no framing, no forms posted anywhere.
The key is kept in the tab's sessionStorage and sent as `Authorization: Bearer`; the page
itself needs no key (it holds nothing secret).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

STATIC = Path(__file__).with_name("console")

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
FILES = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}

router = APIRouter(include_in_schema=False)


def _file(name: str, media_type: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=HEADERS)


@router.get("/console")
@router.get("/console/")
async def console_page() -> Response:
    """The console's page (signing in happens in the browser)."""
    return _file("index.html", "text/html; charset=utf-8")


@router.get("/console/console.js")
async def console_script() -> Response:
    return _file("console.js", FILES["console.js"])


@router.get("/console/console.css")
async def console_style() -> Response:
    return _file("console.css", FILES["console.css"])
