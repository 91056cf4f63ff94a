"""Every native route × every kind of caller: no key, a wrong one, a revoked one, each scope
alone, a route-limited key and the admin key. A route added without a row here fails."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from smsgw_api.deps import AppState
from smsgw_shared.config import Settings

# (method, path) → the scope it needs (None: no key needed).
REQUIRED: dict[tuple[str, str], str | None] = {
    ("POST", "/v1/messages"): "send",
    ("POST", "/v1/messages/preview"): "send",
    ("GET", "/v1/messages"): "read",
    ("GET", "/v1/messages/{message_id}"): "read",
    ("DELETE", "/v1/messages/{message_id}"): "send",
    ("GET", "/v1/inbound"): "read",
    ("GET", "/v1/inbound/{inbound_id}"): "read",
    ("GET", "/v1/routes"): "read",
    ("POST", "/v1/modems/{modem_id}/ussd"): "modems",
    ("GET", "/v1/modems/{modem_id}/balance"): "modems",
    ("POST", "/v1/webhooks"): "webhooks",
    ("GET", "/v1/webhooks"): "webhooks",
    ("GET", "/v1/webhooks/{webhook_id}"): "webhooks",
    ("DELETE", "/v1/webhooks/{webhook_id}"): "webhooks",
    ("POST", "/v1/webhooks/{webhook_id}/rotate"): "webhooks",
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): "webhooks",
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): "webhooks",
    ("GET", "/v1/events"): "read",
    ("GET", "/v1/status"): "admin",
    ("POST", "/v1/keys"): "admin",
    ("GET", "/v1/keys"): "admin",
    ("GET", "/v1/keys/{key_id}"): "admin",
    ("DELETE", "/v1/keys/{key_id}"): "admin",
    # sms-api-server's compatible API (its own error bodies, the same status codes)
    ("POST", "/v1/send"): "send",
    ("GET", "/v1/query"): "read",
    ("GET", "/v1/sse"): "read",
}
COMPAT = {("POST", "/v1/send"), ("GET", "/v1/query"), ("GET", "/v1/sse")}

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/messages"): {"to": "+79210001234", "text": "matrix"},
    ("POST", "/v1/messages/preview"): {"text": "matrix"},
    ("POST", "/v1/modems/{modem_id}/ussd"): {"code": "*100#", "timeout": 0.2},
    ("POST", "/v1/webhooks"): {"url": "http://127.0.0.1:9/matrix", "events": ["*"]},
}

SCOPES = ("send", "read", "modems", "webhooks", "admin")
STREAMS = {
    ("GET", "/v1/events"),
    ("GET", "/v1/sse"),
}  # answered 200 with an endless body: tested over uvicorn


def native_routes(app: Any) -> Iterator[tuple[str, str]]:
    """Every documented /v1 operation."""
    for path, ops in app.openapi()["paths"].items():
        if path.startswith("/v1/"):
            for method in ops:
                yield method.upper(), path


def concrete(path: str) -> str:
    def sub(m: re.Match[str]) -> str:
        return "m2" if m.group(1) == "modem_id" else str(uuid.uuid4())

    return re.sub(r"\{(\w+)\}", sub, path)


@pytest.fixture
def api_settings(api_settings: Settings) -> Settings:
    """The API's test settings with a short balance timeout (no modem worker runs here)."""
    data = api_settings.model_dump()
    data["api"] = data["api"] | {"rpc_timeout": 0.2}
    return Settings.model_validate(data)


async def test_every_route_against_every_caller(
    api_app: tuple[Any, httpx.AsyncClient], api_settings: Settings
) -> None:
    app, api = api_app
    if True:
        routes = sorted(set(native_routes(app)))
        assert sorted(REQUIRED) == routes, "a route needs its row in REQUIRED"
        admin = {"Authorization": f"Bearer {api_settings.bootstrap_api_key}"}

        async def make(**body: Any) -> dict[str, str]:
            body.setdefault("name", "mx" + uuid.uuid4().hex[:8])
            body.setdefault("rate_limit", 0)
            r = await api.post("/v1/keys", json=body, headers=admin)
            assert r.status_code == 201, r.text
            return {"Authorization": f"Bearer {r.json()['secret']}"}

        callers: dict[str, dict[str, str]] = {
            "none": {},
            "wrong": {"Authorization": "Bearer sgw_" + uuid.uuid4().hex},
            "malformed": {"Authorization": "Basic !!!"},
        }
        revoked = await make(scopes=["admin"])
        state: AppState = app.state.smsgw
        rk = await state.key_cache.by_secret(revoked["Authorization"].split()[1])
        assert rk is not None
        assert (await api.delete(f"/v1/keys/{rk.id}", headers=admin)).status_code == 200
        callers["revoked"] = revoked
        for scope in SCOPES:
            callers[scope] = await make(scopes=[scope])
        callers["limited"] = await make(
            scopes=["send", "read", "modems", "webhooks"], routes=["modem:m2"]
        )
        callers["bootstrap"] = admin

        failures = []
        for method, path in routes:
            need = REQUIRED[(method, path)]
            for who, headers in callers.items():
                if who in {"none", "wrong", "malformed", "revoked"}:
                    want = {401}
                elif who == "bootstrap" or who == need or who == "admin":
                    want = None  # anything but 401/403
                elif who == "limited":
                    want = {403} if need == "admin" else None
                else:
                    want = {403}
                if want is None and (method, path) in STREAMS:
                    continue
                r = await api.request(
                    method, concrete(path), headers=headers, json=BODIES.get((method, path))
                )
                ok = r.status_code in want if want else r.status_code not in (401, 403)
                if not ok:
                    failures.append(f"{method} {path} as {who}: {r.status_code} {r.text[:120]}")
                elif r.status_code in (401, 403) and (method, path) not in COMPAT:
                    assert r.headers["content-type"].startswith("application/problem+json")
        assert not failures, "\n".join(failures)
