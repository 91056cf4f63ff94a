"""API keys, scopes, number and sender permissions, rate limits, idempotency."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import uuid

from sqlalchemy import text

from smsgw_api.schemas import SendRequest

from .conftest import running_app


async def test_key_lifecycle(api, admin_headers, make_key):
    data, headers = await make_key(name="shop", scopes=["send"])
    assert data["secret"].startswith("sgw_") and data["scopes"] == ["send"]
    listed = (await api.get("/v1/keys", headers=admin_headers)).json()["data"]
    assert any(k["name"] == "shop" and "secret" not in k for k in listed)
    dup = await api.post("/v1/keys", json={"name": "shop"}, headers=admin_headers)
    assert dup.status_code == 409 and dup.json()["code"] == "key_name_taken"
    ok = await api.post("/v1/messages", json={"to": "+79210001234", "text": "x"}, headers=headers)
    assert ok.status_code == 202
    # send scope only: no reading, no admin
    assert (await api.get("/v1/messages", headers=headers)).status_code == 403
    assert (await api.get("/v1/keys", headers=headers)).status_code == 403
    r = await api.delete(f"/v1/keys/{data['id']}", headers=admin_headers)
    assert r.status_code == 200
    app_cache_ttl = 0  # the API forgets its cache on revoke
    await asyncio.sleep(app_cache_ttl)
    r = await api.post("/v1/messages", json={"to": "+79210001234", "text": "x"}, headers=headers)
    assert r.status_code == 401


async def test_bad_key_bodies(api, admin_headers):
    for body in (
        {"name": ""},
        {"name": "a b"},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "allowed_regex": "("},
        {"name": "x", "extra": 1},
    ):
        r = await api.post("/v1/keys", json=body, headers=admin_headers)
        assert r.status_code == 422, (body, r.text)


async def test_number_and_sender_permissions(api, make_key):
    _, headers = await make_key(allowed_prefixes=["+7921"], allowed_senders=["Shop"])
    r = await api.post(
        "/v1/messages",
        json={"to": ["+79210001234", "+79160001234"], "text": "x", "from": "Shop"},
        headers=headers,
    )
    assert r.status_code == 202
    statuses = [(m["to"], m["status"], m.get("error_code")) for m in r.json()["messages"]]
    assert statuses == [
        ("+79210001234", "queued", None),
        ("+79160001234", "rejected", "number_not_allowed"),
    ]
    r = await api.post(
        "/v1/messages", json={"to": "+79210001234", "text": "x", "from": "Other"}, headers=headers
    )
    assert r.status_code == 403 and r.json()["code"] == "sender_not_allowed"
    _, rx = await make_key(allowed_regex=r"^\+7(921|922)")
    r = await api.post("/v1/messages", json={"to": "+79160001234", "text": "x"}, headers=rx)
    assert r.status_code == 422 and r.json()["code"] == "no_valid_recipients"


async def test_rate_limit(api, make_key):
    _, headers = await make_key(rate_limit=1)
    codes = []
    for _ in range(3):
        r = await api.post(
            "/v1/messages", json={"to": "+79210001234", "text": "x"}, headers=headers
        )
        codes.append(r.status_code)
        if r.status_code == 429:
            break
    assert codes[0] == 202 and codes[-1] == 429, codes
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1


async def test_basic_and_x_api_key(api, make_key):
    data, _ = await make_key()
    import base64

    basic = base64.b64encode(f"{data['name']}:{data['secret']}".encode()).decode()
    for h in ({"Authorization": f"Basic {basic}"}, {"X-API-Key": data["secret"]}):
        r = await api.get("/v1/messages", headers=h)
        assert r.status_code == 200, r.text
    wrong = base64.b64encode(f"other:{data['secret']}".encode()).decode()
    assert (
        await api.get("/v1/messages", headers={"Authorization": f"Basic {wrong}"})
    ).status_code == 401


async def test_idempotency(api, admin_headers):
    body = {"to": "+79210001234", "text": "once"}
    h = admin_headers | {"Idempotency-Key": "abc-1"}
    first = await api.post("/v1/messages", json=body, headers=h)
    again = await api.post("/v1/messages", json=body, headers=h)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = await api.post("/v1/messages", json=body | {"text": "twice"}, headers=h)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    listed = await api.get(
        "/v1/messages", params={"batch_id": first.json()["batch_id"]}, headers=admin_headers
    )
    assert len(listed.json()["data"]) == 1
    # A failing request is remembered too (same answer on replay).
    bad = {"to": "+79210001234", "text": "x", "route": "modem:nope"}
    hb = admin_headers | {"Idempotency-Key": "abc-2"}
    r1 = await api.post("/v1/messages", json=bad, headers=hb)
    r2 = await api.post("/v1/messages", json=bad, headers=hb)
    assert r1.status_code == r2.status_code == 422


async def test_concurrent_idempotent_requests_create_one_message(api, admin_headers):
    body = {"to": "+79210001234", "text": "race", "reference": "idem-race"}
    h = admin_headers | {"Idempotency-Key": "race-1"}
    rs = await asyncio.gather(*(api.post("/v1/messages", json=body, headers=h) for _ in range(5)))
    assert {r.status_code for r in rs} <= {202, 409}
    listed = await api.get("/v1/messages", params={"reference": "idem-race"}, headers=admin_headers)
    assert len(listed.json()["data"]) == 1


async def test_chosen_secret_and_colon_names(api, admin_headers):
    r = await api.post(
        "/v1/keys", json={"name": "test:http2", "secret": "seed-token-x1"}, headers=admin_headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["prefix"] == "se"  # a short chosen secret is never listed whole
    ok = await api.get("/v1/messages", headers={"X-API-Key": "seed-token-x1"})
    assert ok.status_code == 200
    again = await api.post(
        "/v1/keys", json={"name": "other", "secret": "seed-token-x1"}, headers=admin_headers
    )
    assert again.status_code == 409
    short = await api.post("/v1/keys", json={"name": "x2", "secret": "abc"}, headers=admin_headers)
    assert short.status_code == 422


async def test_an_idempotency_key_expires(api_settings, amqp):
    """After `api.idempotency_ttl` a key is new again (another body is no conflict), and
    expired keys that never come back are swept from the store."""
    short = api_settings.model_copy(
        update={"api": api_settings.api.model_copy(update={"idempotency_ttl": 1.0})}
    )
    async with running_app(short) as (app, client):
        state = app.state.smsgw
        h = {"Authorization": f"Bearer {short.bootstrap_api_key}", "Idempotency-Key": "exp-1"}
        first = await client.post(
            "/v1/messages", json={"to": "+79210001234", "text": "a"}, headers=h
        )
        assert first.status_code == 202
        gone = h | {"Idempotency-Key": "exp-2"}
        assert (
            await client.post(
                "/v1/messages", json={"to": "+79210001234", "text": "b"}, headers=gone
            )
        ).status_code == 202
        await asyncio.sleep(1.2)
        again = await client.post(
            "/v1/messages", json={"to": "+79210001234", "text": "other"}, headers=h
        )
        assert again.status_code == 202, again.text
        assert again.json()["batch_id"] != first.json()["batch_id"]
        assert "Idempotent-Replayed" not in again.headers
        assert await state.idempotency.sweep() >= 1
        async with state.engine.connect() as conn:
            left = await conn.execute(
                text("SELECT key FROM idempotency_keys WHERE key IN ('exp-1', 'exp-2')")
            )
            assert [r.key for r in left] == ["exp-1"]  # the fresh claim of exp-1 stays


async def _abandon_claim(state, key: str, body: dict, batch_id: str, age_s: float) -> None:
    """The claim a request left when its process died `age_s` ago, mid-way."""
    digest = hashlib.sha256(
        SendRequest.model_validate(body).model_dump_json(by_alias=True).encode()
    ).hexdigest()
    api_key = await state.keys.by_secret(state.settings.bootstrap_api_key)
    async with state.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO idempotency_keys (api_key_id, key, request_hash, response,"
                " created_at, expires_at) VALUES (:k, :key, :h, CAST(:r AS jsonb),"
                " now() - make_interval(secs => :age), now() + interval '1 day')"
            ),
            {
                "k": api_key.id,
                "key": key,
                "h": digest,
                "r": json.dumps({"batch_id": batch_id}),
                "age": age_s,
            },
        )


async def test_an_abandoned_idempotent_request_is_not_stuck(api, admin_headers, app_state):
    """A request whose process died after claiming its key: while it may still be running
    the key answers 409 in progress; later, a retry takes its place if it stored nothing,
    or gets what it stored (never a second copy of the messages)."""
    body = {"to": ["+79210001234", "+79210001235"], "text": "abandoned"}
    # Claimed a moment ago: it may still be running.
    await _abandon_claim(app_state, "young", body, str(uuid.uuid4()), 1)
    r = await api.post(
        "/v1/messages", json=body, headers=admin_headers | {"Idempotency-Key": "young"}
    )
    assert r.status_code == 409 and r.json()["code"] == "idempotency_in_progress"

    # Claimed long ago, nothing stored: the retry is processed, and replayed after.
    await _abandon_claim(app_state, "empty", body, str(uuid.uuid4()), 300)
    h = admin_headers | {"Idempotency-Key": "empty"}
    first = await api.post("/v1/messages", json=body, headers=h)
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await api.post("/v1/messages", json=body, headers=h)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"

    # Claimed long ago, its messages committed (the store failed before the answer was
    # recorded): the retry gets those messages, and nothing new is stored.
    done = await api.post(
        "/v1/messages", json=body | {"reference": "was-stored"}, headers=admin_headers
    )
    batch = done.json()["batch_id"]
    await _abandon_claim(app_state, "stored", body | {"reference": "was-stored"}, batch, 300)
    h = admin_headers | {"Idempotency-Key": "stored"}
    r = await api.post("/v1/messages", json=body | {"reference": "was-stored"}, headers=h)
    assert r.status_code == 202 and r.headers["Idempotent-Replayed"] == "true"
    assert r.json()["batch_id"] == batch
    assert sorted(m["id"] for m in r.json()["messages"]) == sorted(
        m["id"] for m in done.json()["messages"]
    )
    listed = await api.get(
        "/v1/messages", params={"reference": "was-stored"}, headers=admin_headers
    )
    assert len(listed.json()["data"]) == 2


async def test_a_stored_key_with_a_broken_regex_allows_no_number(api, app_state):
    """A key stored before keys were checked (a regex that does not compile) sends to no
    number, with the usual per-recipient answer, instead of failing with a 500."""
    _, secret = await app_state.keys.create(
        "broken-regex-" + uuid.uuid4().hex[:6], ["send"], allowed_regex="("
    )
    r = await api.post(
        "/v1/messages",
        json={"to": "+79160001234", "text": "x"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "no_valid_recipients"
    assert r.json()["errors"][0]["code"] == "number_not_allowed"


async def test_secrets_never_reach_the_logs(api, admin_headers, make_key, caplog):
    """A key's secret, sent as a header, in Basic auth or in a seed API's query string,
    right or wrong, appears in no log record (at DEBUG, whatever logs it)."""
    caplog.set_level(logging.DEBUG)
    data, headers = await make_key()
    secret = data["secret"]
    wrong = secret[:-4] + "0000"
    basic = base64.b64encode(f"{data['name']}:{secret}".encode()).decode()
    await api.post("/v1/messages", json={"to": "+79160001234", "text": "x"}, headers=headers)
    await api.get("/v1/messages", headers={"Authorization": f"Basic {basic}"})
    await api.get("/v1/messages", headers={"X-API-Key": wrong})
    await api.get(f"/?c=send_sms&access-token={secret}&params=not-json")
    await api.get(f"/?c=send_sms&access-token={wrong}")
    await api.get(f"/cgi-bin/sendsms?login={data['name']}&psw={secret}&to=1&text=x")
    # (the test's own HTTP client logs its URLs: not the gateway's logs)
    records = [r for r in caplog.records if r.name != "httpx"]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in records)
    assert records  # something was logged at all
    assert secret not in logged and wrong not in logged
