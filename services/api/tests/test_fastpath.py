"""The fast path for JSON `POST /v1/messages` answers as the FastAPI route does.

Each case is sent to the app and to the same app built without the fast path (the
reference: FastAPI's route), and must get the same status and code.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from smsgw_api.app import create_app
from smsgw_api.deps import AppState
from smsgw_api.fastpath import SendFastPath
from smsgw_shared.config import Settings

PROBLEM = "application/problem+json"


@pytest.fixture
async def reference(api_settings: Settings, api_app) -> AsyncIterator[httpx.AsyncClient]:
    """The same app without the fast path, on the same store and broker."""
    app = create_app(api_settings)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not SendFastPath]
    async with app.router.lifespan_context(app):
        state: AppState = app.state.smsgw
        await asyncio.wait_for(state.extras["broker_ready"].wait(), 15)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
def both(api: httpx.AsyncClient, reference: httpx.AsyncClient):
    async def _both(raw: bytes, headers: dict[str, str]) -> tuple[httpx.Response, httpx.Response]:
        headers = headers | {"Content-Type": "application/json"}
        fast = await api.post("/v1/messages", content=raw, headers=headers)
        slow = await reference.post("/v1/messages", content=raw, headers=headers)
        return fast, slow

    return _both


def _code(r: httpx.Response) -> str | None:
    return r.json().get("code") if r.headers["content-type"].startswith(PROBLEM) else None


@pytest.mark.parametrize(
    "body",
    [
        {"to": "+79160001234", "text": "x"},
        {"to": ["+79160001234", "bad", "+79160001234"], "text": "x"},
        {"to": "+79160001234"},
        {"to": "+79160001234", "text": 5},
        {"to": "+79160001234", "text": "x", "unknown": 1},
        {"to": "+79160001234", "text": "x", "send_at": "2030-01-01T10:00:00"},
        {"to": "+79160001234", "text": "x", "route": "modem:zz"},
        {"to": "+79160001234", "text": "x" * 2000},
        {"to": ["12", "abc"], "text": "x"},
        {"to": "+79160001234", "text": "x", "status_callback": "not a url"},
        [1, 2],
    ],
)
async def test_same_answer_as_the_route(both, admin_headers, body):
    fast, slow = await both(json.dumps(body).encode(), admin_headers)
    assert (fast.status_code, _code(fast)) == (slow.status_code, _code(slow)), (
        fast.text,
        slow.text,
    )
    if fast.status_code == 202:
        f, s = fast.json(), slow.json()
        assert [m["status"] for m in f["messages"]] == [m["status"] for m in s["messages"]]
        assert f["messages"][0].keys() == s["messages"][0].keys()
    else:
        assert fast.json().keys() == slow.json().keys()
        assert fast.json()["instance"] == "/v1/messages"


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe\x00garbage", b'{"to": "+7916'])
async def test_malformed_json_same_code(both, admin_headers, raw):
    fast, slow = await both(raw, admin_headers)
    assert fast.status_code == slow.status_code == 400
    assert _code(fast) == _code(slow) == "malformed_json"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic !!"}],
)
async def test_unauthorized_same_answer(both, headers):
    fast, slow = await both(b'{"to": "+79160001234", "text": "x"}', headers)
    assert fast.status_code == slow.status_code == 401
    assert fast.headers["WWW-Authenticate"] == slow.headers["WWW-Authenticate"]


async def test_scope_and_idempotency_same_answer(both, admin_headers, make_key):
    _, read_only = await make_key(scopes=["read"])
    fast, slow = await both(b'{"to": "+79160001234", "text": "x"}', read_only)
    assert (
        (fast.status_code, _code(fast))
        == (slow.status_code, _code(slow))
        == (
            403,
            "forbidden_scope",
        )
    )

    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = b'{"to": "+79160001234", "text": "once"}'
    fast, slow = await both(body, admin_headers | key)
    assert fast.status_code == slow.status_code == 202
    assert fast.json() == slow.json()  # the second is the replay of the first
    assert slow.headers["Idempotent-Replayed"] == "true"
    fast, slow = await both(b'{"to": "+79160001234", "text": "other"}', admin_headers | key)
    assert _code(fast) == _code(slow) == "idempotency_conflict"

    too_long = {"Idempotency-Key": "k" * 256}
    fast, slow = await both(body, admin_headers | too_long)
    assert (fast.status_code, _code(fast)) == (slow.status_code, _code(slow))
    assert fast.status_code == 422
    assert fast.json()["errors"] == slow.json()["errors"]


async def test_other_content_types_go_to_the_route(api, admin_headers):
    r = await api.post(
        "/v1/messages",
        content=b"to=+79160001234&text=x",
        headers=admin_headers | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = await api.post(
        "/v1/messages",
        content=b'{"to": "+79160001234", "text": "x"}',
        headers=admin_headers | {"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert r.status_code == 202


async def test_counted_in_metrics_under_the_route(api, admin_headers):
    r = await api.post(
        "/v1/messages", json={"to": "+79160001234", "text": "x"}, headers=admin_headers
    )
    assert r.status_code == 202
    r = await api.post("/v1/messages", json={"to": "+79160001234"}, headers=admin_headers)
    assert r.status_code == 422
    metrics = (await api.get("/metrics")).text
    assert 'smsgw_api_requests_total{method="POST",route="/v1/messages",status="202"}' in metrics
    assert 'smsgw_api_requests_total{method="POST",route="/v1/messages",status="422"}' in metrics


async def test_in_the_middleware_stack_inside_cors(api_settings: Settings, amqp):
    settings = api_settings.model_copy(
        update={
            "api": api_settings.api.model_copy(update={"cors_origins": ["https://app.example"]})
        }
    )
    app = create_app(settings)
    names = [m.cls.__name__ for m in app.user_middleware]  # outermost first
    assert names.index("CORSMiddleware") < names.index(SendFastPath.__name__)
    assert names[-1] == SendFastPath.__name__
    async with app.router.lifespan_context(app):
        state: AppState = app.state.smsgw
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            r = await client.post(
                "/v1/messages",
                json={"to": "+79160001234", "text": "x"},
                headers={
                    "Authorization": f"Bearer {settings.bootstrap_api_key}",
                    "Origin": "https://app.example",
                },
            )
            assert r.status_code == 202, r.text
            assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert state.ingestor is not None


async def test_store_connection_dropped_under_the_accept_path(api, admin_headers, app_state):
    """The accept path's own connections are killed by the server: the next send gets a
    clear 503 or goes through on a new connection, never a 500; the one after that is
    accepted."""
    ok = await api.post(
        "/v1/messages", json={"to": "+79160001234", "text": "x"}, headers=admin_headers
    )
    assert ok.status_code == 202
    async with app_state.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = 'smsgw'"
            )
        )
    first = await api.post(
        "/v1/messages", json={"to": "+79160001234", "text": "x"}, headers=admin_headers
    )
    assert first.status_code in (202, 503), first.text
    if first.status_code == 503:
        assert first.json()["code"] == "store_unavailable"
        assert first.headers["Retry-After"] == "5"
    again = await api.post(
        "/v1/messages", json={"to": "+79160001234", "text": "x"}, headers=admin_headers
    )
    assert again.status_code == 202, again.text


@pytest.mark.parametrize("raw", [b"", b"   ", b"null", b"{}"])
async def test_empty_and_null_bodies_same_answer(both, admin_headers, raw):
    fast, slow = await both(raw, admin_headers)
    assert (fast.status_code, _code(fast)) == (slow.status_code, _code(slow)), (
        fast.text,
        slow.text,
    )
    assert fast.status_code in (400, 422)


@pytest.mark.parametrize("raw", [b"", b'{"to": 5}', b"{not json"])
async def test_no_key_and_a_bad_body(both, raw):
    """Without a key the fast path answers 401 before looking at the body. The route
    agrees, except for a body that is not JSON at all: FastAPI parses the body before it
    runs the route's dependencies, so there it says 400 first. The fast path's order
    (nothing about the body to a client without a key) is the one kept."""
    fast, slow = await both(raw, {})
    assert (fast.status_code, _code(fast)) == (401, "unauthorized")
    if raw == b"{not json":
        assert (slow.status_code, _code(slow)) == (400, "malformed_json")
    else:
        assert (slow.status_code, _code(slow)) == (401, "unauthorized")


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line = f"{name}{{{want}}} " if labels else f"{name} "
    for row in metrics.splitlines():
        if row.startswith(line):
            return float(row.split()[-1])
    return 0.0


async def test_metrics_count_sends_by_route_and_latency(api, admin_headers):
    """Messages accepted by route and state, recipients rejected by reason, the request
    latency histogram and the outbox backlog gauge, as Prometheus reads them."""
    before = (await api.get("/metrics")).text
    r = await api.post(
        "/v1/messages",
        json={"to": ["+79160001234", "+79210001234", "12"], "text": "m"},
        headers=admin_headers,
    )
    assert r.status_code == 202
    after = (await api.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    accepted = "smsgw_api_messages_accepted_total"
    assert grew(accepted, route="smpp:b1", status="queued") == 1
    assert grew(accepted, route="modem:*", status="queued") == 1
    assert grew("smsgw_api_recipients_rejected_total", reason="invalid_number") == 1
    latency = "smsgw_api_request_seconds"
    assert grew(f"{latency}_count", method="POST", route="/v1/messages") == 1
    assert grew(f"{latency}_bucket", le="+Inf", method="POST", route="/v1/messages") == 1
    assert "smsgw_api_outbox_backlog " in after
