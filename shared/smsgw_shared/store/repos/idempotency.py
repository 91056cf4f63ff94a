"""Idempotency keys: the same key and body returns the stored answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_shared.store.schema import idempotency_keys


@dataclass(frozen=True)
class IdempotencyRecord:
    request_hash: str
    status_code: int | None  # None: the first request is still being processed
    response: Any  # the answer; while in progress {"batch_id": the batch it is storing}
    age: float = 0.0  # seconds since the key was claimed

    @property
    def batch_id(self) -> str | None:
        """The batch an unfinished request was storing (its messages, if any, have it)."""
        if self.status_code is None and isinstance(self.response, dict):
            value = self.response.get("batch_id")
            return str(value) if value else None
        return None


class IdempotencyRepository:
    """All SQL about idempotency keys."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def claim(
        self,
        api_key_id: uuid.UUID,
        key: str,
        request_hash: str,
        ttl: float,
        batch_id: str | None = None,
    ) -> IdempotencyRecord | None:
        """Claim the key for this request (which will store batch `batch_id`); None if
        claimed now, else the existing record."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.api_key_id == api_key_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.expires_at < func.now(),
                )
            )
            values: dict[str, Any] = {
                "api_key_id": api_key_id,
                "key": key,
                "request_hash": request_hash,
                "expires_at": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl),
            }
            if batch_id:
                values["response"] = {"batch_id": batch_id}
            res = await conn.execute(
                insert(idempotency_keys)
                .values(**values)
                .on_conflict_do_nothing()
                .returning(idempotency_keys.c.key)
            )
            if res.first() is not None:
                return None
            age = func.extract("epoch", func.now() - idempotency_keys.c.created_at)
            row = (
                await conn.execute(
                    select(idempotency_keys, age.label("age")).where(
                        idempotency_keys.c.api_key_id == api_key_id,
                        idempotency_keys.c.key == key,
                    )
                )
            ).first()
        if row is None:  # expired and deleted concurrently: treat as claimed elsewhere
            return IdempotencyRecord(request_hash, None, None)
        m = row._mapping
        return IdempotencyRecord(
            m["request_hash"], m["status_code"], m["response"], float(m["age"] or 0)
        )

    async def retake(
        self, api_key_id: uuid.UUID, key: str, old_batch_id: str | None, batch_id: str
    ) -> bool:
        """Claim again a key whose request was abandoned before it stored anything (still
        in progress, still for `old_batch_id`); False if another request did it first."""
        if old_batch_id is None:
            return False  # claimed without a batch id: nothing tells what it stored
        still = idempotency_keys.c.response["batch_id"].astext == old_batch_id
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(idempotency_keys)
                .where(
                    idempotency_keys.c.api_key_id == api_key_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.status_code.is_(None),
                    still,
                )
                .values(created_at=func.now(), response={"batch_id": batch_id})
                .returning(idempotency_keys.c.key)
            )
            return res.first() is not None

    async def complete(
        self, api_key_id: uuid.UUID, key: str, status_code: int, response: Any
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key)
                .values(status_code=status_code, response=response)
            )

    async def sweep(self, limit: int = 10_000) -> int:
        """Delete up to `limit` expired keys (a key is only replaced when it comes back, so
        the ones that never do would stay forever); returns how many went."""
        stale = (
            select(idempotency_keys.c.api_key_id, idempotency_keys.c.key)
            .where(idempotency_keys.c.expires_at < func.now())
            .limit(limit)
        )
        async with self.engine.begin() as conn:
            res = await conn.execute(
                delete(idempotency_keys).where(
                    tuple_(idempotency_keys.c.api_key_id, idempotency_keys.c.key).in_(stale)
                )
            )
            return int(res.rowcount or 0)

    async def release(self, api_key_id: uuid.UUID, key: str) -> None:
        """Forget a claim whose request failed before anything was stored."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key
                )
            )
