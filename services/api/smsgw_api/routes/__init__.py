"""The API's routers; `include_routers` mounts them all."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from smsgw_api.compat import smsapiserver, smssender, smstele, smstools
from smsgw_api.routes import events, inbound, keys, messages, modems, status, webhooks

# Order matters only for overlapping paths: compat adapters come last.
ROUTERS: tuple[APIRouter, ...] = (
    messages.router,
    keys.router,
    modems.router,
    inbound.router,
    webhooks.router,
    events.router,
    status.router,
    smssender.router,
    smstools.router,
    smsapiserver.router,
    smstele.router,
)


def include_routers(app: FastAPI) -> None:
    """Mount every router in `ROUTERS`, in order."""
    for router in ROUTERS:
        app.include_router(router)
