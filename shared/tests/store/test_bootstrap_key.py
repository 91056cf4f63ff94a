"""The bootstrap key (`KeyRepository.ensure`): created once, kept, never revived."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_shared.store.repos.keys import SCOPES, KeyRepository
from smsgw_shared.store.schema import api_keys


async def test_ensure_creates_the_key_once(engine: AsyncEngine) -> None:
    repo = KeyRepository(engine)
    secret = "sgw_boot_" + uuid.uuid4().hex
    first = await repo.ensure("bootstrap", secret, list(SCOPES))
    again = await repo.ensure("bootstrap", secret, list(SCOPES))
    assert again.id == first.id and again.revoked_at is None
    found = await repo.by_secret(secret)
    assert found is not None and found.id == first.id


async def test_a_revoked_bootstrap_key_stays_revoked(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    repo = KeyRepository(engine)
    secret = "sgw_boot_" + uuid.uuid4().hex
    key = await repo.ensure("bootstrap", secret, list(SCOPES))
    async with engine.begin() as conn:  # what an admin's DELETE /v1/keys/{id} does
        await conn.execute(
            update(api_keys).where(api_keys.c.id == key.id).values(revoked_at=api_keys.c.created_at)
        )
    with caplog.at_level(logging.WARNING, logger="smsgw_shared.store.repos.keys"):
        after = await repo.ensure("bootstrap", secret, list(SCOPES))  # the next start
    assert after.id == key.id
    assert after.revoked_at is not None
    assert await repo.by_secret(secret) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("revoked" in w and "not re-enabled" in w for w in warnings), warnings
    assert not any(secret in w for w in warnings)
