"""Every bad input gets a clear problem-details answer and breaks nothing else."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from smsgw_shared.store.repos.messages import NewMessages

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"to": "+79160001234"}, 422, "validation_error"),  # no text
        ({"to": "+79160001234", "text": ""}, 422, "validation_error"),
        ({"to": "+79160001234", "text": 5}, 422, "validation_error"),
        ({"to": 79160001234, "text": "x"}, 422, "validation_error"),
        ({"to": [], "text": "x"}, 422, "validation_error"),
        ({"to": "+79160001234", "text": "x", "flash": "yes"}, 422, "validation_error"),
        ({"to": "+79160001234", "text": "x", "unknown": 1}, 422, "validation_error"),
        ({"to": "+79160001234", "text": "x", "validity": 5}, 422, "validation_error"),
        ({"to": "+79160001234", "text": "x", "encoding": "latin9"}, 422, "validation_error"),
        ({"to": "+79160001234", "text": "x", "send_at": "tomorrow"}, 422, "validation_error"),
        (
            {"to": "+79160001234", "text": "x", "send_at": "2030-01-01T10:00:00"},
            422,
            "invalid_send_at",
        ),
        ({"to": "+79160001234", "text": "x", "route": "modem:zz"}, 422, "unknown_route"),
        ({"to": "+79160001234", "text": "x", "route": "carrier-pigeon"}, 422, "unknown_route"),
        ({"to": "+79160001234", "text": "x" * 2000}, 422, "too_many_parts"),
        ({"to": "+79160001234", "text": "€uro", "encoding": "gsm7"}, 404, None),
        ({"to": "+79160001234", "text": "Привет", "encoding": "gsm7"}, 422, "unencodable_text"),
        ({"to": "+79160001234", "text": "a\x00b"}, 422, "invalid_text"),
        ({"to": "+79160001234", "text": "x", "from": "TooLongSenderName"}, 422, "invalid_sender"),
        ({"to": ["12", "abc"], "text": "x"}, 422, "no_valid_recipients"),
        ({"to": "0079160001234x", "text": "x"}, 422, "no_valid_recipients"),
        (
            {"to": ["+7916000123" + str(i % 10) for i in range(1001)], "text": "x"},
            422,
            "too_many_recipients",
        ),
        (
            {"to": "+79160001234", "text": "x", "status_callback": "not a url"},
            422,
            "validation_error",
        ),
    ],
)
async def test_bad_send_bodies(api, admin_headers, body, status, code):
    r = await api.post("/v1/messages", json=body, headers=admin_headers)
    if status == 404:  # sentinel for "accepted": € is in the GSM extension table
        assert r.status_code == 202, r.text
        return
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == code
    assert r.json()["status"] == status


async def test_all_invalid_lists_each(api, admin_headers):
    r = await api.post(
        "/v1/messages", json={"to": ["12", "+1555"], "text": "x"}, headers=admin_headers
    )
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [e["to"] for e in errors] == ["12", "+1555"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"\xff\xfe\x00garbage", b"[1,2,3]", b"null", b'"text"', b""],
)
async def test_malformed_bodies(api, admin_headers, raw):
    r = await api.post(
        "/v1/messages", content=raw, headers=admin_headers | {"Content-Type": "application/json"}
    )
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] in ("malformed_json", "validation_error")


async def test_huge_body_is_413(api, admin_headers):
    big = b'{"to": "+79160001234", "text": "' + b"x" * 2_000_000 + b'"}'
    r = await api.post(
        "/v1/messages", content=big, headers=admin_headers | {"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    # The API still works afterwards.
    ok = await api.post(
        "/v1/messages", json={"to": "+79210001234", "text": "x"}, headers=admin_headers
    )
    assert ok.status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": "nope"},
        {"Authorization": "Basic !!"},
        {"Authorization": "Token abc"},
    ],
)
async def test_missing_or_wrong_key(api, headers):
    r = await api.post("/v1/messages", json={"to": "+79160001234", "text": "x"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    assert "WWW-Authenticate" in r.headers


async def test_unknown_message_ids(api, admin_headers):
    for mid in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        r = await api.get(f"/v1/messages/{mid}", headers=admin_headers)
        assert r.status_code == 404 and r.json()["code"] == "message_not_found"
        r = await api.delete(f"/v1/messages/{mid}", headers=admin_headers)
        assert r.status_code == 404


async def test_nul_characters_are_refused_and_break_no_other_send(api, admin_headers):
    """A NUL (U+0000) in a send: a clear 422 for that request; the sends committed at the
    same moment are accepted."""
    bad = [
        {"to": "+79160001234", "text": "x", "reference": "a\u0000b"},
        {"to": "+79160001234", "text": "nul \u0000 inside"},
    ]
    good = [{"to": f"+7916000{i:04d}", "text": f"good {i}"} for i in range(20)]
    answers = await asyncio.gather(
        *(api.post("/v1/messages", json=b, headers=admin_headers) for b in [*bad, *good])
    )
    for r, code in zip(answers[:2], ("invalid_characters", "invalid_text"), strict=True):
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == code
    assert [r.status_code for r in answers[2:]] == [202] * 20


async def test_a_value_the_store_refuses_fails_only_its_own_request(app_state):
    """Whatever slips past validation and is refused by PostgreSQL (here a NUL in a text)
    fails the request it came with, not the others of the same group commit."""
    committer = app_state.ingestor.committer

    def group(text: str) -> NewMessages:
        g = NewMessages(
            batch_id=uuid.uuid4(),
            api_key_id=None,
            sender=None,
            text=text,
            encoding="gsm7",
            parts_count=1,
            status="scheduled",
            send_at=datetime.now(UTC) + timedelta(days=1),
        )
        g.add(uuid.uuid4(), "+79160001234", "modem:*", uuid.uuid4())
        return g

    groups = [group(f"fine {i}") for i in range(10)]
    groups.insert(5, group("not \x00 storable"))
    results = await asyncio.gather(*(committer.submit(g) for g in groups), return_exceptions=True)
    assert isinstance(results[5], asyncpg.DataError)
    assert [r for i, r in enumerate(results) if i != 5] == [[]] * 10
    async with app_state.engine.begin() as conn:
        ids = [g.ids[0] for g in groups]
        stored = await conn.execute(
            text("SELECT count(*) FROM messages WHERE id = ANY(:ids)"), {"ids": ids}
        )
        assert stored.scalar_one() == 10
        await conn.execute(text("DELETE FROM messages WHERE id = ANY(:ids)"), {"ids": ids})


async def test_a_filter_the_store_refuses_is_422_not_503(api, admin_headers):
    r = await api.get("/v1/messages", params={"reference": "a\u0000"}, headers=admin_headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_value"
    assert "Retry-After" not in r.headers


async def test_an_unexpected_error_is_a_problem_500(api_app, admin_headers, monkeypatch):
    """A bug still answers problem details (and the server logs its traceback)."""
    app, _ = api_app

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.state.smsgw.messages, "list", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        r = await client.get("/v1/messages", headers=admin_headers)
    assert r.status_code == 500
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "internal_error"
    assert "a bug" not in r.text


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/keys"])
async def test_huge_chunked_body_is_413(api, admin_headers, path):
    """A body sent without Content-Length (chunked) is counted as it arrives."""

    async def chunks():
        yield b'{"to": "+79160001234", "text": "'
        for _ in range(40):
            yield b"x" * 50_000
        yield b'"}'

    r = await api.post(
        path, content=chunks(), headers=admin_headers | {"Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "payload_too_large"
