"""schemathesis against the app's own `/openapi.json`: generated valid and invalid requests
to every documented operation (native and compatible), over a real socket. None may answer
a 5xx, and every status code and content type answered must be documented.

The number of examples per operation is bounded (about a minute on a loaded 2-core
machine); `SMSGW_SCHEMATHESIS_EXAMPLES` raises it for a deeper run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis.internal.conjecture import utils as cu
from schemathesis import DataGenerationMethod
from schemathesis._override import CaseOverride
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    status_code_conformance,
)
from schemathesis.runner import events, from_schema

from smsgw_api.server import uvicorn_options
from smsgw_shared.config import Settings


def _shim_many_more() -> None:
    """hypothesis-jsonschema 0.23.1 (the last release) draws objects with
    `many(...).more()`, which the locked hypothesis replaced with `with many(...) as e: for
    _ in e:`. The old call, on the new protocol: enter on the first call, one element per
    call, exit when the elements are done."""
    many = cu.many
    if hasattr(many, "more"):
        return

    def more(self: Any) -> bool:
        steps = self.__dict__.get("_shim_steps")
        if steps is None:
            self.__enter__()
            steps = self._shim_steps = iter(self)
        try:
            next(steps)
        except StopIteration:
            self.__exit__(None)
            return False
        return True

    many.more = more


_shim_many_more()

EXAMPLES = int(os.environ.get("SMSGW_SCHEMATHESIS_EXAMPLES", "25"))
# Endless bodies (live event streams): their refusals are tested in their own modules.
STREAMS = ("/v1/events", "/v1/sse")


@pytest.fixture
def api_settings(api_settings: Settings) -> Settings:
    """Short waits: no modem worker runs here (USSD, balance and SMSSender's wait for the
    modem time out), and no rate limit gets in the way of the generated requests."""
    data = api_settings.model_dump()
    data["api"] = data["api"] | {"rpc_timeout": 0.2}
    data["compat"] = data["compat"] | {"smssender_wait": 0.2}
    return Settings.model_validate(data)


@pytest.fixture
async def base_url(api_app: Any, api_settings: Settings) -> AsyncIterator[str]:
    """The running app behind a real socket, served as `smsgw api` serves it."""
    app, _ = api_app
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", **uvicorn_options(api_settings)
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task


def _said(check: Any) -> str:
    """What failed: the check, the answer (status, type, start of the body)."""
    out = f"{check.name}: {check.message or ''}"
    response = check.response
    if response is not None:
        ctype = response.headers.get("content-type", ["?"])[0]
        body = base64.b64decode(response.body or "")[:160].decode("utf-8", "replace")
        out += f" -> {response.status_code} {ctype} {body!r}"
    return out


def _run(spec: dict[str, Any], base_url: str, name: str, secret: str) -> tuple[Any, list[str]]:
    schema = schemathesis.from_dict(
        spec,
        base_url=base_url,
        force_schema_version="30",  # FastAPI writes 3.1; schemathesis 3 reads it as 3.0
        data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
    ).exclude(path=list(STREAMS))
    runner = from_schema(
        schema,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance],
        hypothesis_settings=hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        ),
        auth=(name, secret),  # Basic name:secret: native and compatible APIs alike
        # The key as SMSSender's and SMStele's query parameters present it, so that their
        # generated requests get past the login.
        override=CaseOverride(
            query={"access-token": secret, "login": name, "psw": secret},
            headers={},
            cookies={},
            path_parameters={},
        ),
        request_timeout=20_000,
        stateful=None,
    )
    failures: list[str] = []
    finished = None
    for event in runner.execute():
        if isinstance(event, events.AfterExecution):
            for check in event.result.checks:
                if check.value.name != "success":
                    failures.append(f"{event.result.method} {event.result.path}: {_said(check)}")
            for error in event.result.errors:
                failures.append(f"{event.result.method} {event.result.path}: error {error}")
        elif isinstance(event, events.Finished):
            finished = event
        elif isinstance(event, events.InternalError):
            failures.append(f"internal error: {event.message} {event.exception}")
    return finished, sorted(set(failures))


@pytest.mark.timeout(600)  # ~1 min here; a loaded machine may take a few
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # schemathesis 3 on jsonschema 4.18+
async def test_generated_requests_get_documented_answers(api, base_url, app_state):
    from .compat.util import fresh_key

    key, secret = await fresh_key(app_state, scopes=("send", "read", "admin"))
    spec = (await api.get("/openapi.json")).json()
    finished, failures = await asyncio.to_thread(_run, spec, base_url, key.name, secret)
    assert finished is not None
    cases = finished.total.get("not_a_server_error", {}).get("total", 0)
    print(
        f"schemathesis: {cases} generated requests, {finished.passed_count} operations passed,"
        f" {finished.failed_count} failed, {finished.errored_count} errored"
        f" in {finished.running_time:.1f} s"
    )
    assert not failures, "\n".join(failures)
