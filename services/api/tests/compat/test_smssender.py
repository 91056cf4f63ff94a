"""SMSSender (seed 000): its example requests, every error code, the wait for the modem."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from smsgw_api.compat.smssender import MESSAGES
from smsgw_api.problems import Problem
from smsgw_shared.messages import ModemReply

from .util import fake_modem, fresh_key, seed_key

TOKEN = "500a7317788e421227edf73552a4dd10"  # the seed's own example token


@pytest.fixture
async def token(app_state) -> str:
    await seed_key(app_state, "smssender", TOKEN, scopes=("send", "read", "modems"))
    return TOKEN


def url(params: dict[str, Any] | None = None, c: str | None = "send_sms", token: str = TOKEN):
    q = []
    if c is not None:
        q.append(f"c={c}")
    q.append(f"access-token={token}")
    if params is not None:
        q.append("params=" + quote(json.dumps(params, ensure_ascii=False)))  # "+" → %2B
    return "/?" + "&".join(q)


async def test_seed_full_request_verbatim_waits_for_the_modem(api, app_state, token, admin_headers):
    full = (
        '/?c=send_sms&access-token=500a7317788e421227edf73552a4dd10&params={"phone": '
        '"%2B79203048606", "text": "Your task №12346 is done"}'
    )
    async with fake_modem(app_state) as sent:
        r = await api.get(full)
    assert r.status_code == 200, r.text
    assert r.json() == {"response": "success", "code": 200}
    [mid] = sent
    native = (await api.get(f"/v1/messages/{mid}", headers=admin_headers)).json()
    assert native["status"] == "sent"
    assert native["to"] == "+79203048606" and native["text"] == "Your task №12346 is done"
    assert native["parts"] == 1 and native["encoding"] == "ucs2"


async def test_seed_params_example_with_8_prefix(api, app_state, token):
    params = {
        "phone": "89203048606",
        "text": "Ваша заявка №12346 Принята в обработку. См. http://d3.ru/1dhk54ff",
    }
    async with fake_modem(app_state):
        r = await api.get(url(params))
    assert (r.status_code, r.json()) == (200, {"response": "success", "code": 200})


PARAM_ERRORS = [
    ({"text": "hi"}, 30),
    ({"phone": "", "text": "hi"}, 30),
    ({"phone": "9203048606", "text": "hi"}, 31),
    ({"phone": "+89203048606", "text": "hi"}, 31),
    ({"phone": "7920304860", "text": "hi"}, 31),
    ({"phone": "79203048606"}, 21),
    ({"phone": "79203048606", "text": ""}, 21),
    ({"phone": "79203048606", "text": "a" * 161}, 22),
    ({"phone": "79203048606", "text": "я" * 71}, 23),
]


async def test_error_codes(api, token):
    for params, code in PARAM_ERRORS:
        r = await api.get(url(params))
        assert r.status_code == 400  # the request's mistake (the seed answered 500)
        assert r.json() == {"error": MESSAGES[code], "code": code}, params


async def test_limits_are_inclusive(api, app_state, token):
    async with fake_modem(app_state):
        assert (await api.get(url({"phone": "79203048606", "text": "a" * 160}))).status_code == 200
        assert (await api.get(url({"phone": "79203048607", "text": "я" * 70}))).status_code == 200


async def test_payload_and_command_errors(api, token):
    r = await api.get(url(None))
    assert (r.status_code, r.json()["code"]) == (400, 32)
    r = await api.get(f"/?c=send_sms&access-token={TOKEN}&params=not-json")
    assert (r.status_code, r.json()["code"]) == (400, 32)
    r = await api.get(f"/?access-token={TOKEN}")
    assert r.status_code == 400
    assert r.json() == {"error": "command is required", "code": 10}
    r = await api.get(f"/?c=reboot&access-token={TOKEN}")
    assert r.status_code == 400
    assert r.json() == {"error": "SmsHandler instance has no attribute 'reboot'", "code": None}


async def test_authenticate_errors(api, app_state, token):
    for bad in (
        "/?c=send_sms",
        "/?c=send_sms&access-token=",
        "/?c=send_sms&access-token=wrong",
        f"/?c=send_sms&token={TOKEN}",
    ):
        r = await api.get(bad)
        assert (r.status_code, r.json()) == (401, {"error": "Authenticate error"}), bad
    _, secret = await fresh_key(app_state, scopes=("read",))
    r = await api.get(url({"phone": "79203048606", "text": "x"}, token=secret))
    assert r.status_code == 401


async def test_key_param_name_is_configurable(api, app_state, token):
    app_state.settings.compat.smssender_key_param = "token"
    async with fake_modem(app_state):
        r = await api.get(
            f'/?c=send_sms&token={TOKEN}&params={{"phone": "89203048606", "text": "x"}}'
        )
    assert r.status_code == 200
    assert (await api.get(url({"phone": "89203048606", "text": "x"}))).status_code == 401


async def test_modem_failure_is_33(api, app_state, token, admin_headers):
    async with fake_modem(app_state, outcome="failed") as done:
        r = await api.get(url({"phone": "79203048606", "text": "x"}))
    assert r.status_code == 500
    assert r.json() == {"error": "internal modem error. The message not sended", "code": 33}
    native = (await api.get(f"/v1/messages/{done[0]}", headers=admin_headers)).json()
    assert native["status"] == "failed"


async def test_no_modem_in_time_is_33_and_the_message_is_taken_back(api, app_state):
    _, secret = await fresh_key(app_state)
    r = await api.get(url({"phone": "79203048606", "text": "x"}, token=secret))  # waits 3 s
    assert r.status_code == 500 and r.json()["code"] == 33
    mine = {"Authorization": f"Bearer {secret}"}
    [listed] = (await api.get("/v1/messages", headers=mine)).json()["data"]
    assert listed["status"] == "canceled"  # so a retrying client does not send it twice


async def test_forbidden_number_is_31(api, app_state):
    _, secret = await fresh_key(app_state, allowed_prefixes=["+7916"])
    r = await api.get(url({"phone": "79203048606", "text": "x"}, token=secret))
    assert r.status_code == 400 and r.json()["code"] == 31


class FakeRpc:
    def __init__(self, reply: ModemReply | Problem) -> None:
        self.reply = reply
        self.asked: list[str] = []

    async def modem(self, modem_id: str, action: str, code: Any, timeout: float) -> ModemReply:
        self.asked.append(modem_id)
        if isinstance(self.reply, Problem):
            raise self.reply
        return self.reply


async def test_get_balance(api, app_state, token):
    reply = ModemReply(
        request_id="r",
        modem_id="m1",
        ok=True,
        raw="Balance 123.45 r.",
        amount=Decimal("123.45"),
        currency="RUB",
    )
    app_state.rpc = fake = FakeRpc(reply)
    r = await api.get(f"/?c=get_balance&access-token={TOKEN}")
    assert r.status_code == 200
    assert r.json()["response"] == 123.45 and r.json()["code"] == 200
    assert fake.asked == ["m1"]  # the first configured modem
    r = await api.get(f'/?c=get_balance&access-token={TOKEN}&params={{"modem": "m2"}}')
    assert r.status_code == 200 and fake.asked[-1] == "m2"


async def test_get_balance_modem_error_is_33(api, app_state, token):
    app_state.rpc = FakeRpc(Problem(504, "modem_timeout", "The modem did not answer in time"))
    r = await api.get(f"/?c=get_balance&access-token={TOKEN}")
    assert r.status_code == 500 and r.json()["code"] == 33
