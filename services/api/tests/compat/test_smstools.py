"""smstools-http-api (seed 001): the README's curl examples, 400/401/404, permissions."""

from __future__ import annotations

import re

import httpx
import pytest

from .util import fresh_key, seed_key, set_status

LVV = httpx.BasicAuth("lvv", "SecretPAss")  # the seed's example user
JSON_HEADERS = {"Content-Type": "application/json; charset=UTF-8"}


@pytest.fixture
async def lvv(app_state) -> httpx.BasicAuth:
    await seed_key(app_state, "lvv", "SecretPAss")
    return LVV


async def test_readme_send_then_lookup(api, app_state, lvv, admin_headers):
    r = await api.post(
        "/api/v1.0/sms/outgoing",
        content='{"text":"Hi, Jack!", "mobiles":["79680000000", "79160000000"]}',
        headers=JSON_HEADERS,
        auth=lvv,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"message_id", "parts_count", "sent_text"}
    assert set(body["message_id"]) == {"79680000000", "79160000000"}
    assert body["parts_count"] == 1 and body["sent_text"] == "Hi, Jack!"
    mid = body["message_id"]["79160000000"]

    # Not in the sent spool yet: smsd has not sent it.
    r = await api.get(f"/api/v1.0/sms/sent/{mid}", headers=JSON_HEADERS, auth=lvv)
    assert (r.status_code, r.json()) == (404, {"error": "Not found"})
    await set_status(app_state, mid, "sent")  # as the projection does on the worker's `sent`
    r = await api.get(f"/api/v1.0/sms/sent/{mid}", headers=JSON_HEADERS, auth=lvv)
    assert r.status_code == 200
    got = r.json()
    assert set(got) == {"From", "To", "Sent", "message_id"}
    assert got["From"] == "lvv" and got["To"] == "79160000000" and got["message_id"] == mid
    assert re.fullmatch(r"\d\d-\d\d-\d\d \d\d:\d\d:\d\d", got["Sent"])
    native = (await api.get(f"/v1/messages/{mid}", headers=admin_headers)).json()
    assert native["status"] == "sent" and native["to"] == "+79160000000"


async def test_readme_wrong_message_id(api, lvv):
    r = await api.get("/api/v1.0/sms/sent/smsgw.http.TqvEdt", headers=JSON_HEADERS, auth=lvv)
    assert r.status_code == 404
    assert r.json() == {"error": "Not found"}


async def test_unauthorized_as_flask_httpauth(api, lvv):
    for auth in (None, httpx.BasicAuth("lvv", "wrong"), httpx.BasicAuth("nobody", "SecretPAss")):
        for method, path in (
            ("POST", "/api/v1.0/sms/outgoing"),
            ("GET", "/api/v1.0/sms/outgoing?mobiles=79160000000&text=x"),
            ("GET", "/api/v1.0/sms/sent/x"),
            ("GET", "/api/v1.0/sms/sent/"),
        ):
            r = await api.request(method, path, json={"text": "x", "mobiles": ["1"]}, auth=auth)
            assert r.status_code == 401
            assert r.json() == {"error": "Unauthorized access"}
            assert r.headers["www-authenticate"].startswith("Basic ")
    r = await api.post(
        "/api/v1.0/sms/outgoing",
        json={"text": "x", "mobiles": ["79160000000"]},
        headers={"Authorization": "Bearer SecretPAss"},
    )
    assert r.status_code == 401


BAD_BODIES = [
    "not json",
    "[]",
    "{}",
    '{"text": "x"}',
    '{"mobiles": ["79160000000"]}',
    '{"text": "x", "mobiles": []}',
    '{"text": "x", "mobiles": "79160000000"}',
    '{"text": "x", "mobiles": [79160000000]}',
    '{"text": 5, "mobiles": ["79160000000"]}',
]


async def test_bad_requests_are_400(api, lvv):
    for body in BAD_BODIES:
        r = await api.post("/api/v1.0/sms/outgoing", content=body, headers=JSON_HEADERS, auth=lvv)
        assert (r.status_code, r.json()) == (400, {"error": "Request error"}), body


async def test_mobile_perms_and_invalid_mobiles(api, app_state):
    key, secret = await fresh_key(app_state, allowed_prefixes=["+7911"])
    auth = httpx.BasicAuth(key.name, secret)
    r = await api.post(
        "/api/v1.0/sms/outgoing",
        json={"text": "Привет", "mobiles": ["79110000000", "79160000000", "abc"]},
        auth=auth,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["message_id"]["79160000000"] == "Forbidden"
    assert re.fullmatch(r"[0-9a-f-]{36}", body["message_id"]["79110000000"])
    assert body["abc"] == "Not valid"
    r = await api.post(
        "/api/v1.0/sms/outgoing", json={"text": "x", "mobiles": ["79160000000"]}, auth=auth
    )
    assert r.status_code == 201
    assert r.json()["message_id"] == {"79160000000": "Forbidden"}


async def test_get_outgoing_and_listing(api, app_state):
    key, secret = await fresh_key(app_state)
    auth = httpx.BasicAuth(key.name, secret)
    r = await api.get(
        "/api/v1.0/sms/outgoing",
        params={"mobiles": "+79160000000,79680000000", "text": "x" * 200},
        auth=auth,
    )
    assert r.status_code == 201, r.text
    ids = r.json()["message_id"]
    assert set(ids) == {"79160000000", "79680000000"} and r.json()["parts_count"] == 2
    r = await api.get("/api/v1.0/sms/outgoing/", auth=auth)
    assert r.status_code == 200
    assert sorted(r.json()["message_id"]) == sorted(ids.values())
    assert r.json()["total_count"] == 2 and r.json()["limit"] == 1000
    assert (await api.get("/api/v1.0/sms/sent/", auth=auth)).json()["message_id"] == []
    assert (await api.get("/api/v1.0/sms/nowhere/", auth=auth)).status_code == 404
    r = await api.get("/api/v1.0/sms/outgoing", params={"mobiles": "79160000000"}, auth=auth)
    assert r.status_code == 400


async def test_other_users_messages_are_not_found(api, app_state, lvv):
    key, secret = await fresh_key(app_state)
    r = await api.post(
        "/api/v1.0/sms/outgoing",
        json={"text": "x", "mobiles": ["79160000000"]},
        auth=httpx.BasicAuth(key.name, secret),
    )
    mid = r.json()["message_id"]["79160000000"]
    r = await api.get(f"/api/v1.0/sms/outgoing/{mid}", auth=lvv)
    assert r.status_code == 404
