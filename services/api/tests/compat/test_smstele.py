"""SMStele HTTP protocol (seed 004): its curl examples verbatim, every error code, charsets."""

from __future__ import annotations

import re

import pytest

from .util import fresh_key, seed_key, set_status

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
AUTH = "login=test:http&psw=~test123"


@pytest.fixture
async def tele(app_state) -> None:
    await seed_key(app_state, "test:http", "~test123")


async def curl(api, body: str | bytes, url: str):
    """`curl -d <body> <url>`: a POST whose body is sent as typed (raw spaces and all)."""
    path = re.sub(r"^https?://[^/]+", "", url)
    data = body.encode() if isinstance(body, str) else body
    r = await api.post(path, content=data, headers=FORM)
    assert r.status_code == 200
    return r.json()


async def test_seed_error_examples_verbatim(api, tele):
    r1 = await curl(
        api,
        "mes=Test message 1&id=custom-message-id-test-11",
        "http://rexmsc.rex400.ru:8881/cgi-bin/sendsms?login=test:http",
    )
    assert r1 == {"error": "-22", "description": "No password"}
    long_id = "custommessage-id-test-11-too-long-1234567890abcdefghijklmnopqrstuvwxyz"
    r2 = await curl(
        api,
        f"charset=windows-1251&mes=Test message 1&id={long_id}",
        "http://rexmsc.rex400.ru:8881/cgi-bin/sendsms?login=test:http&psw=~test123",
    )
    assert r2 == {"error": "-35", "description": f"Invalid attribute: 'id={long_id}'"}
    r3 = await curl(
        api,
        "phones=&mes=Test message 1&id=custom-message-id-test-11",
        "http://rexmsc.rex400.ru:8881/cgi-bin/sendsms?login=test:http&psw=~test123",
    )
    assert r3 == {"error": "-25", "description": "Invalid attribute: 'phones='"}
    r4 = await curl(
        api,
        "mes=Test message 1&id=custom-message-id-test-11",
        "http://rexmsc.rex400.ru:8881/cgi-bin/sendsms?login=test:http&psw=~test123",
    )
    assert r4 == {"error": "-24", "description": "Missing attribute: 'phones'"}


async def test_seed_example_1_verbatim(api, tele, admin_headers):
    got = await curl(
        api,
        "phones=79160001234&mes=Test message 1&id=custom-messageid-test-21",
        "http://rexsmsc.rex400.ru:8881/cgibin/sendsms?login=test:http&psw=~test123",
    )
    assert got == {
        "id": "custom-messageid-test-21",
        "cnt": "1",
        "messages": [
            {
                "id": "custom-messageid-test-21",
                "phone": "79160001234",
                "status": "-99",
                "error": "-99",
                "cnt": "1",
                "operator": "mMTS",
                "region": "77",
                "mnc": "01",
            }
        ],
    }
    listed = await api.get("/v1/messages?reference=custom-messageid-test-21", headers=admin_headers)
    [m] = listed.json()["data"]
    assert m["to"] == "+79160001234" and m["text"] == "Test message 1" and m["status"] == "queued"


async def test_seed_example_2_and_status_query(api, app_state, tele, admin_headers):
    got = await curl(
        api,
        "phones=79160001234,79072233645,79676771707,79260004567&mes=Test message 1"
        "&id=custom-message-id-test-22",
        "http://rexsmsc.rex400.ru:8881/cgibin/sendsms?login=test:http&psw=~test123",
    )
    assert got["id"] == "custom-message-id-test-22"
    # The seed's provider refused two of these numbers; smsgw sends to every valid one.
    assert got["cnt"] == "4"
    assert [m["phone"] for m in got["messages"]] == [
        "79160001234",
        "79072233645",
        "79676771707",
        "79260004567",
    ]
    assert [(m["operator"], m["region"], m["mnc"]) for m in got["messages"]] == [
        ("mMTS", "77", "01"),
        ("", "", ""),
        ("mBEELINE", "", "99"),
        ("mMEGAFON", "77", "02"),
    ]
    assert all(isinstance(v, str) for m in got["messages"] for v in m.values())

    listed = await api.get(
        "/v1/messages?reference=custom-message-id-test-22", headers=admin_headers
    )
    by_to = {m["to"]: m["id"] for m in listed.json()["data"]}
    await set_status(app_state, by_to["+79160001234"], "delivered")
    await set_status(app_state, by_to["+79260004567"], "undelivered")

    status = await curl(
        api,
        "id=custom-message-id-test-22",
        "http://rexsmsc.rex400.ru:8881/cgibin/status?login=test:http&psw=~test123",
    )
    results = status["results"]
    assert [r["phone"] for r in results] == sorted(m["phone"] for m in got["messages"])
    first = next(r for r in results if r["phone"] == "79160001234")
    assert set(first) == {
        "id", "phone", "sender", "status", "err", "stat", "type", "send_timestamp",
        "last_timestamp", "operator", "region", "mnc",
    }  # fmt: skip
    assert first["stat"] == "DELIVRD" and first["type"] == "1" and first["operator"] == "mMTS"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+03", first["send_timestamp"])
    assert [r["stat"] for r in results] == ["ENROUTE", "DELIVRD", "UNDELIV", "ENROUTE"]
    native = (await api.get(f"/v1/messages/{by_to['+79160001234']}", headers=admin_headers)).json()
    assert native["status"] == "delivered"

    one = await curl(
        api, "phone=79260004567&id=custom-message-id-test-22", f"/cgi-bin/status?{AUTH}"
    )
    assert [r["stat"] for r in one["results"]] == ["UNDELIV"]
    by_phone = await api.get(f"/cgibin/status?{AUTH}&phone=79676771707")
    assert [r["phone"] for r in by_phone.json()["results"]] == ["79676771707"]


async def test_get_and_both_spellings(api, tele):
    for path in ("/cgi-bin/sendsms", "/cgibin/sendsms"):
        r = await api.get(f"{path}?{AUTH}&phones=79210001234&mes=hello")
        assert r.status_code == 200 and r.json()["cnt"] == "1"
        assert r.json()["id"]  # assigned when the client gives none


@pytest.mark.parametrize(
    ("charset", "raw"),
    [
        (None, "%CF%F0%E8%E2%E5%F2"),  # windows-1251 is the default
        ("windows-1251", "%CF%F0%E8%E2%E5%F2"),
        ("utf-8", "%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82"),
        ("koi8-r", "%F0%D2%C9%D7%C5%D4"),
    ],
)
async def test_charsets_decode_the_raw_bytes(api, tele, admin_headers, charset, raw):
    extra = f"&charset={charset}" if charset else ""
    ref = f"cs-{charset}"
    got = await curl(
        api, f"phones=79210001234&mes={raw}&id={ref}{extra}", f"/cgi-bin/sendsms?{AUTH}"
    )
    assert got["cnt"] == "1", got
    listed = await api.get(f"/v1/messages?reference={ref}", headers=admin_headers)
    assert listed.json()["data"][0]["text"] == "Привет"


async def test_options_reach_the_native_message(api, tele, admin_headers):
    got = await curl(
        api,
        "phones=79210001234&mes=Привет&id=opts&translit=1&flash=1&validity=3600"
        "&deferred=2099-12-10 09:00:00&charset=utf-8",
        f"/cgi-bin/sendsms?{AUTH}",
    )
    assert got["cnt"] == "1", got
    [m] = (await api.get("/v1/messages?reference=opts", headers=admin_headers)).json()["data"]
    assert m["text"] == "Privet" and m["flash"] is True and m["validity"] == 3600
    assert m["status"] == "scheduled" and m["send_at"].startswith("2099-12-10T06:00:00")


async def test_hlr_answers_from_the_numbering_plan(api, tele, admin_headers):
    got = await curl(api, "phones=79160001234;12&hlr=1&id=hlr-1", f"/cgi-bin/sendsms?{AUTH}")
    assert got["cnt"] == "1"
    assert [(m["phone"], m["status"], m["operator"]) for m in got["messages"]] == [
        ("79160001234", "0", "mMTS"),
        ("12", "-26", ""),
    ]
    assert (await api.get("/v1/messages?reference=hlr-1", headers=admin_headers)).json()[
        "data"
    ] == []


async def test_bad_phones_are_listed_with_empty_operator(api, tele):
    got = await curl(api, "phones=79160001234,12345&mes=x", f"/cgi-bin/sendsms?{AUTH}")
    assert got["cnt"] == "1"
    bad = got["messages"][1]
    assert bad["phone"] == "12345" and bad["status"] == "-26" and bad["operator"] == ""


def _code(body: dict) -> str:
    assert set(body) == {"error", "description"}, body
    return body["error"]


SENDSMS_ERRORS = [
    ("", "phones=79160001234&mes=x", "-21"),
    ("login=test:http", "phones=79160001234&mes=x", "-22"),
    ("login=test:http&psw=nope", "phones=79160001234&mes=x", "-23"),
    ("login=nobody&psw=~test123", "phones=79160001234&mes=x", "-23"),
    (AUTH, "phones=79160001234&mes=x&viber=1", "-6"),
    (AUTH, "phones=79160001234&mes=x&viber_validity=90000", "-28"),
    (AUTH, "mes=x", "-24"),
    (AUTH, "phones= ; &mes=x", "-25"),
    (AUTH, "phones=12,abc&mes=x", "-26"),
    (AUTH, "phones=79160001234", "-27"),
    (AUTH, "phones=79160001234&mes=", "-27"),
    (AUTH, "phones=79160001234&mes=x&validity=abc", "-28"),
    (AUTH, "phones=79160001234&mes=x&validity=10", "-28"),
    (AUTH, "phones=79160001234&mes=x&deferred=2017-13-45 09:00:00", "-29"),
    (AUTH, "phones=79160001234&mes=x&deferred=tomorrow", "-29"),
    (AUTH, "phones=79160001234&mes=x&priority=9", "-30"),
    (AUTH, "phones=79160001234&mes=x&sender=ThisIsTooLongASender", "-31"),
    (AUTH, "phones=79160001234&mes=x&charset=latin-9", "-33"),
    (AUTH, "phones=79160001234&mes=%FF%FE&charset=utf-8", "-33"),
    (AUTH, "phones=79160001234&mes=x&id=" + "i" * 65, "-35"),
    (AUTH, "phones=79160001234&mes=" + "x" * 2001, "-41"),
    (AUTH, "phones=79160001234&mes=" + "x" * 1600, "-42"),
]


async def test_sendsms_error_codes(api, tele):
    for query, body, code in SENDSMS_ERRORS:
        got = await curl(api, body, f"/cgi-bin/sendsms?{query}")
        assert _code(got) == code, (query, body[:80], got)


async def test_status_error_codes(api, tele):
    assert _code(await curl(api, "", f"/cgi-bin/status?{AUTH}")) == "-34"
    assert _code(await curl(api, "id=" + "i" * 65, f"/cgi-bin/status?{AUTH}")) == "-35"
    assert _code(await curl(api, "id=x", "/cgi-bin/status?login=test:http")) == "-22"
    assert (await curl(api, "id=never-sent", f"/cgi-bin/status?{AUTH}")) == {"results": []}


async def test_sender_rules_read_scope_limits(api, app_state):
    key, secret = await fresh_key(app_state, allowed_senders=["REX400.RU"])
    auth = f"login={key.name}&psw={secret}"
    bad = await curl(api, "phones=79160001234&mes=x&sender=OTHER", f"/cgi-bin/sendsms?{auth}")
    assert _code(bad) == "-32"
    ok = await curl(
        api, "phones=79160001234&mes=x&sender=REX400.RU&id=s", f"/cgi-bin/sendsms?{auth}"
    )
    assert ok["cnt"] == "1"
    status = await curl(api, "id=s", f"/cgi-bin/status?{auth}")
    assert status["results"][0]["sender"] == "REX400.RU"

    reader, rsecret = await fresh_key(app_state, scopes=("read",))
    r = await curl(
        api, "phones=79160001234&mes=x", f"/cgi-bin/sendsms?login={reader.name}&psw={rsecret}"
    )
    assert _code(r) == "-23"

    app_state.settings.api.max_recipients = 2
    many = await curl(
        api, "phones=79160001234,79160001235,79160001236&mes=x", f"/cgi-bin/sendsms?{auth}"
    )
    assert _code(many) == "-2"

    limited, lsecret = await fresh_key(app_state, rate_limit=0.01)
    lauth = f"login={limited.name}&psw={lsecret}"
    assert (await curl(api, "phones=79160001234&mes=x", f"/cgi-bin/sendsms?{lauth}"))["cnt"] == "1"
    assert _code(await curl(api, "phones=79160001234&mes=x", f"/cgi-bin/sendsms?{lauth}")) == "-1"
