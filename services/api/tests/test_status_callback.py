"""Webhook and `status_callback` URLs through the real app: every non-public target and every
malformed host is a 422 problem with a stable code (never a 500), at subscription and at
submit, and nothing is stored for a refused send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from smsgw_api.deps import AppState
from smsgw_shared.config import Settings
from smsgw_shared.store.schema import messages

from .conftest import running_app

REFUSED = [
    "http://127.0.0.1:8080/cb",
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1 (was a 201)
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of the metadata address
    "http://[64:ff9b:1::808:808]/",  # NAT64 local-use
    "http://[2002:a00:1::1]/",  # 6to4 of 10.0.0.1
    "http://[::a00:1]/",  # IPv4-compatible of 10.0.0.1
    "http://[::ffff:192.168.1.1]/",  # IPv4-mapped
    "http://[fec0::1]/",  # site-local
    "http://[2001::1]/",  # Teredo
    "http://100.64.0.1/",  # CGNAT
    "http://localhost:8080/cb",  # resolves to loopback
    "http://a..b/",  # was a UnicodeError: a 500
    "http://" + "a" * 64 + ".example/",
    "http://" + ".".join(["b" * 63] * 4) + "/",
    "http://xn--zz-/",
    "http://127.1/",
]


@pytest.fixture
async def strict_api(api_settings: Settings, amqp: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with `webhooks.allow_private = false`, as in production."""
    data = api_settings.model_dump()
    data["webhooks"]["allow_private"] = False
    settings = Settings.model_validate(data)
    async with running_app(settings) as (_, client):
        client.headers["Authorization"] = f"Bearer {settings.bootstrap_api_key}"
        yield client


async def test_webhook_urls_refused(strict_api: httpx.AsyncClient) -> None:
    for url in REFUSED:
        r = await strict_api.post("/v1/webhooks", json={"url": url, "events": ["*"]})
        assert r.status_code == 422, (url, r.text)
        assert r.json()["code"] == "webhook_url_refused", (url, r.text)
    r = await strict_api.post(
        "/v1/webhooks", json={"url": "http://[64:ff9b::808:808]/hook", "events": ["*"]}
    )
    assert r.status_code == 201, r.text  # NAT64 of a public address is public
    await strict_api.delete(f"/v1/webhooks/{r.json()['id']}")


async def _stored(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(messages))).scalar_one())


async def test_status_callback_refused_at_submit(
    strict_api: httpx.AsyncClient, engine: Any
) -> None:
    before = await _stored(engine)
    for url in REFUSED:
        body = {"to": "+79160001234", "text": "x", "status_callback": url}
        r = await strict_api.post("/v1/messages", json=body)
        assert r.status_code == 422, (url, r.text)
        problem = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        # Either the guard's code or, for what pydantic's URL type refuses, the schema's.
        assert problem["code"] in ("status_callback_refused", "validation_error"), (url, r.text)
        if problem["code"] == "status_callback_refused":
            assert problem["field"] == "status_callback"
    assert await _stored(engine) == before
    refused = [
        (
            await strict_api.post(
                "/v1/messages", json={"to": "+79160001234", "text": "x", "status_callback": url}
            )
        ).json()["code"]
        for url in ("http://[64:ff9b::7f00:1]/", "http://a..b/", "http://localhost/cb")
    ]
    assert refused == ["status_callback_refused"] * 3


async def test_public_status_callback_accepted(strict_api: httpx.AsyncClient, engine: Any) -> None:
    body = {"to": "+79160001234", "text": "x", "status_callback": "http://8.8.8.8/sms/status"}
    r = await strict_api.post("/v1/messages", json=body)
    assert r.status_code == 202, r.text
    mid = r.json()["messages"][0]["id"]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(messages.c.status_callback, messages.c.api_key_id).where(
                    messages.c.id == mid
                )
            )
        ).one()
    assert row.status_callback == "http://8.8.8.8/sms/status"
    assert row.api_key_id is not None  # the submitting key: it signs the callbacks


async def test_private_status_callback_allowed_in_dev(
    api: httpx.AsyncClient, admin_headers: dict[str, str], app_state: AppState
) -> None:
    assert app_state.settings.webhooks.allow_private
    body = {"to": "+79160001234", "text": "x", "status_callback": "http://127.0.0.1:9/cb"}
    r = await api.post("/v1/messages", json=body, headers=admin_headers)
    assert r.status_code == 202, r.text
    body["status_callback"] = "http://a..b/"  # malformed is malformed, dev or not
    r = await api.post("/v1/messages", json=body, headers=admin_headers)
    assert r.status_code == 422 and r.json()["code"] == "status_callback_refused", r.text
