"""The API's routers; `include_routers` mounts every one that exists."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

# Order matters only for overlapping paths: compat adapters come last.
ROUTERS = [
    "smsgw_api.routes.messages",
    "smsgw_api.routes.keys",
    "smsgw_api.routes.modems",
    "smsgw_api.routes.inbound",
    "smsgw_api.routes.webhooks",
    "smsgw_api.routes.events",
    "smsgw_api.compat.smssender",
    "smsgw_api.compat.smstools",
    "smsgw_api.compat.smsapiserver",
    "smsgw_api.compat.smstele",
]


def include_routers(app: FastAPI) -> None:
    """Mount each router module listed in `ROUTERS` that is present."""
    for name in ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        app.include_router(module.router)
