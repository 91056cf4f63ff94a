"""The ops CLI's failures, against the real API behind uvicorn with no worker running: an
API that cannot be reached, no key, a wrong key, a key without the scope, something down,
an unknown id. Each says so clearly and exits with its documented code (2 usage, 3
unreachable, 4 key refused, 1 an error answer or something down).

The commands' successes, through a whole gateway, are in tests/test_ops_cli.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import Callable
from typing import Any

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings
from smsgw_shared.testing import free_port


async def smsgw(*argv: str, url: str | None = None, key: str | None = None) -> tuple[int, str, str]:
    """Run `smsgw ARGV` (exit code, stdout, stderr); the API's URL and key from the
    environment, as an operator would set them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    if url:
        env["SMSGW_API_URL"] = url
    if key:
        env["SMSGW_API_KEY"] = key
    p = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smsgw_cli.main",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode is not None
    return p.returncode, out.decode(), err.decode()


async def test_unreachable_api_is_named_with_exit_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (("status",), ("tail",), ("send", "+79210001234", "hi"), ("webhooks", "list")):
        code, out, err = await smsgw(*argv, url=url, key="sgw_whatever")
        assert code == 3, (argv, code, err)
        assert f"smsgw: cannot reach the API at {url}" in err and "SMSGW_API_URL" in err
        assert "Traceback" not in err and out == ""
    # --url wins over the environment
    code, _, err = await smsgw("status", "--url", url, url="http://127.0.0.1:1", key="k")
    assert code == 3 and url in err


async def test_no_key_is_a_usage_error() -> None:
    code, _, err = await smsgw("status", url="http://127.0.0.1:1")
    assert code == 2
    assert "no API key: pass --key or set SMSGW_API_KEY" in err


async def test_refused_keys_and_what_is_down(
    serve: Callable[[Settings], Any], api_settings: Settings, amqp: AmqpConnection
) -> None:
    # `amqp`: its teardown deletes the job queues the served API declares.
    async with serve(api_settings) as host:
        url = f"http://{host}"
        admin = api_settings.bootstrap_api_key
        assert admin

        wrong = "sgw_" + uuid.uuid4().hex
        for argv in (("status",), ("tail",), ("messages", "show", str(uuid.uuid4()))):
            code, _, err = await smsgw(*argv, url=url, key=wrong)
            assert code == 4, (argv, err)
            assert f"the API at {url} refused the key (401 unauthorized)" in err

        import httpx

        async with httpx.AsyncClient(base_url=url) as c:
            r = await c.post(
                "/v1/keys",
                json={"name": "ro" + uuid.uuid4().hex[:8], "scopes": ["read"]},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert r.status_code == 201, r.text
            read_only = r.json()["secret"]
        code, _, err = await smsgw("status", url=url, key=read_only)
        assert code == 4 and "not allowed (403 forbidden_scope)" in err and "'admin'" in err
        code, _, err = await smsgw("webhooks", "list", "--key", read_only, url=url)
        assert code == 4 and "'webhooks'" in err

        # No worker and no inbound service run here: every route is down (`unknown`, or
        # `stale` when another test of the session left a heartbeat in the database).
        code, out, err = await smsgw("status", url=url, key=admin)
        assert code == 1, out + err
        assert out.splitlines()[0].startswith(f"smsgw at {url}: DOWN")
        for route in ("modem:m1", "modem:m2", "smpp:b1"):
            assert re.search(rf"^  - {re.escape(route)} is (unknown|stale)$", out, re.M), out
        assert "the inbound service is not consuming" in out
        code, out, _ = await smsgw("status", "--json", url=url, key=admin)
        s = json.loads(out)
        assert code == 1 and s["ok"] is False and s["broker"]["connected"]
        assert s["store"]["reachable"] and s["outbox"]["backlog"] == 0

        code, _, err = await smsgw("messages", "show", str(uuid.uuid4()), url=url, key=admin)
        assert code == 1 and "404 message_not_found" in err
        code, _, err = await smsgw(
            "webhooks", "redeliver", str(uuid.uuid4()), "x", url=url, key=admin
        )
        assert code == 1 and "404 webhook_not_found" in err
        code, _, err = await smsgw("tail", "--type", "nonsense", url=url, key=admin)
        assert code == 1 and "422 invalid_event_type" in err
