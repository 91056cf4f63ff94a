"""A message's `status_callback` is signed with the secret of the key that sent it (HMAC key
SHA-256 of the key's secret), verifiable with the code docs/webhooks.md shows, as written."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from smsgw_inbound.dispatcher import Dispatcher
from smsgw_inbound.events import LogEvent, record_events, stable_id
from smsgw_shared.config import Settings, WebhooksConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.keys import KeyRepository
from smsgw_shared.store.repos.webhooks import WebhookRepository, new_webhook_secret
from smsgw_shared.store.schema import event_log
from smsgw_shared.testing.helpers import wait_for

from .conftest import add_message, clear_webhooks, http_receiver

DOC = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"


def doc_snippet(marker: str) -> str:
    """The python block after `<!-- marker -->` in docs/webhooks.md."""
    m = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert m, marker
    return m.group(1)


def config(settings: Settings, **kw: object) -> WebhooksConfig:
    base = settings.webhooks.model_dump() | {"poll_interval": 0.05, "timeout": 2.0}
    return WebhooksConfig.model_validate(base | kw)


@contextlib.asynccontextmanager
async def dispatching(engine: AsyncEngine, cfg: WebhooksConfig) -> AsyncIterator[Dispatcher]:
    stop = asyncio.Event()
    d = Dispatcher(WebhookRepository(engine), cfg)
    task = asyncio.create_task(d.run(stop))
    try:
        yield d
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def status_event(
    engine: AsyncEngine, key_id: uuid.UUID | None, callback: str, reference: str
) -> str:
    """Store a message of `key_id` with its callback and log its `sent` event."""
    mid = await add_message(
        engine, api_key_id=key_id, status_callback=callback, reference=reference
    )
    ev = LogEvent(
        event_id=stable_id("cb-test", mid),
        type="message.status",
        data={"message_id": str(mid), "status": "sent", "reference": reference},
        created_at=utcnow(),
        route="smpp:b1",
        message_id=mid,
        api_key_id=key_id,
        callback_url=callback,
    )
    async with engine.begin() as conn:
        await record_events(conn, [ev])
    return ev.event_id


@pytest.fixture
async def clean(engine: AsyncEngine) -> AsyncIterator[None]:
    await clear_webhooks(engine)
    yield
    await clear_webhooks(engine)


async def test_callbacks_signed_with_the_sending_keys_secret(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    keys = KeyRepository(engine)
    key_a, secret_a = await keys.create("cb-a-" + uuid.uuid4().hex[:8], ["send", "read"])
    key_b, secret_b = await keys.create("cb-b-" + uuid.uuid4().hex[:8], ["send", "read"])
    # A configured callback_secret no longer signs the messages of a key.
    cfg = config(settings, callback_secret=new_webhook_secret())
    async with http_receiver() as rec:
        ev_a = await status_event(engine, key_a.id, rec.url + "?k=a", "from-a")
        ev_b = await status_event(engine, key_b.id, rec.url + "?k=b", "from-b")
        async with dispatching(engine, cfg):
            await wait_for(lambda: _true(len(rec.received) == 2), timeout=10)
    got = {r["headers"]["webhook-id"]: r for r in rec.received}
    for ev, api_key, other in ((ev_a, secret_a, secret_b), (ev_b, secret_b, secret_a)):
        body, headers = got[ev]["body"], got[ev]["headers"]
        # The documented code, as written, with what the client knows: its own key.
        ns: dict[str, Any] = {"API_KEY": api_key, "request_body": body, "request_headers": headers}
        exec(doc_snippet("verify-callback-library"), ns)
        assert ns["payload"]["id"] == ev and ns["payload"]["type"] == "message.status"
        ns = {"API_KEY": api_key, "request_body": body, "request_headers": headers}
        exec(doc_snippet("verify-callback-by-hand"), ns)
        # The other key's secret, and the configured callback_secret, do not verify it.
        for wrong in (other,):
            ns = {"API_KEY": wrong, "request_body": body, "request_headers": headers}
            with pytest.raises(WebhookVerificationError):
                exec(doc_snippet("verify-callback-library"), ns)
            with pytest.raises(AssertionError, match="bad signature"):
                exec(doc_snippet("verify-callback-by-hand"), ns)
        assert cfg.callback_secret
        with pytest.raises(WebhookVerificationError):
            Webhook(cfg.callback_secret).verify(body, headers)


async def test_keyless_callbacks_use_the_configured_secret(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    """A message without a key (none are, through the APIs) falls back to
    `webhooks.callback_secret`; a revoked key still signs its messages' callbacks."""
    keys = KeyRepository(engine)
    key, secret = await keys.create("cb-r-" + uuid.uuid4().hex[:8], ["send"])
    assert await keys.revoke(key.id)
    cfg = config(settings, callback_secret=new_webhook_secret())
    async with http_receiver() as rec:
        ev_none = await status_event(engine, None, rec.url, "keyless")
        ev_revoked = await status_event(engine, key.id, rec.url + "?r=1", "revoked")
        async with dispatching(engine, cfg):
            await wait_for(lambda: _true(len(rec.received) == 2), timeout=10)
    got = {r["headers"]["webhook-id"]: r for r in rec.received}
    assert cfg.callback_secret
    Webhook(cfg.callback_secret).verify(got[ev_none]["body"], got[ev_none]["headers"])
    ns: dict[str, Any] = {
        "API_KEY": secret,
        "request_body": got[ev_revoked]["body"],
        "request_headers": got[ev_revoked]["headers"],
    }
    exec(doc_snippet("verify-callback-by-hand"), ns)


async def _true(value: bool) -> bool:
    return value


async def test_signed_after_the_event_log_row_is_gone(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    """Retention may delete the event's event_log row (retention.event_log_days) while its
    callback is still being retried: the message itself still names the key."""
    keys = KeyRepository(engine)
    key, secret = await keys.create("cb-l-" + uuid.uuid4().hex[:8], ["send"])
    async with http_receiver() as rec:
        ev = await status_event(engine, key.id, rec.url, "log-pruned")
        async with engine.begin() as conn:
            await conn.execute(delete(event_log).where(event_log.c.event_id == ev))
        async with dispatching(engine, config(settings)):
            await wait_for(lambda: _true(len(rec.received) == 1), timeout=10)
    got = rec.received[0]
    assert got["headers"]["webhook-id"] == ev
    ns: dict[str, Any] = {
        "API_KEY": secret,
        "request_body": got["body"],
        "request_headers": got["headers"],
    }
    exec(doc_snippet("verify-callback-by-hand"), ns)
