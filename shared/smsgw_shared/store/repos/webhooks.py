"""Webhook subscriptions; `WebhookRepository` is all SQL about webhooks (deliveries
and attempts in `webhook_deliveries`)."""

from __future__ import annotations

import base64
import secrets as _secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_shared.store.direct import driver_of
from smsgw_shared.store.repos.webhook_deliveries import (
    HOST_PATTERN,
    MESSAGE_ID_PATTERN,
    SECRET_PREFIX,
    AttemptResult,
    ClaimedDelivery,
    DeliveryStore,
    NewDelivery,
    host_key,
    key_callback_secret,
)
from smsgw_shared.store.schema import webhook_deliveries, webhooks

# Re-exported: importers of this module get the delivery types from here too.
__all__ = [
    "HOST_PATTERN",
    "MESSAGE_ID_PATTERN",
    "SECRET_PREFIX",
    "AttemptResult",
    "ClaimedDelivery",
    "NewDelivery",
    "Subscription",
    "WebhookRepository",
    "host_key",
    "key_callback_secret",
    "new_webhook_secret",
]

ACTIVE_SUBSCRIPTIONS = """
SELECT w.id, w.url, w.events, w.routes, w.numbers, w.api_key_id, k.scopes, k.revoked_at
FROM webhooks AS w LEFT JOIN api_keys AS k ON k.id = w.api_key_id
WHERE w.active
"""


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Subscription:
    """An active subscription as the projection matches it against events."""

    id: uuid.UUID
    url: str
    events: tuple[str, ...]
    routes: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    owner_id: uuid.UUID | None = None
    owner_admin: bool = True


def _public(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {k: v for k, v in m.items() if k != "secrets"}


class WebhookRepository(DeliveryStore):
    """All SQL about webhooks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- subscriptions ------------------------------------------------------------------
    async def create(
        self,
        *,
        url: str,
        events: Sequence[str],
        routes: Sequence[str] = (),
        numbers: Sequence[str] = (),
        description: str | None = None,
        api_key_id: uuid.UUID | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Store a subscription; returns its public row and its (only shown once) secret."""
        secret = new_webhook_secret()
        values = {
            "id": uuid.uuid4(),
            "api_key_id": api_key_id,
            "url": url,
            "events": list(events),
            "routes": list(routes),
            "numbers": list(numbers),
            "secrets": [secret],
            "description": description,
        }
        async with self.engine.begin() as conn:
            row = (await conn.execute(insert(webhooks).values(values).returning(webhooks))).one()
        return _public(row), secret

    async def list_active(self, owner_id: uuid.UUID | None) -> list[dict[str, Any]]:
        """Active subscriptions (of one owner, or all when `owner_id` is None)."""
        stmt = select(webhooks).where(webhooks.c.active).order_by(webhooks.c.created_at)
        if owner_id is not None:
            stmt = stmt.where(webhooks.c.api_key_id == owner_id)
        async with self.engine.connect() as conn:
            return [_public(r) for r in await conn.execute(stmt)]

    async def get(self, webhook_id: uuid.UUID) -> dict[str, Any] | None:
        """One active subscription."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.active)
                )
            ).first()
        return _public(row) if row is not None else None

    async def deactivate(self, webhook_id: uuid.UUID) -> bool:
        """Delete a subscription (kept inactive, with its delivery log); its pending
        deliveries are given up."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(webhooks)
                .where(webhooks.c.id == webhook_id, webhooks.c.active)
                .values(active=False)
                .returning(webhooks.c.id)
            )
            if res.first() is None:
                return False
            await conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.webhook_id == webhook_id,
                    webhook_deliveries.c.status == "pending",
                )
                .values(status="dead", last_error="webhook deleted", updated_at=func.now())
            )
            return True

    async def rotate(self, webhook_id: uuid.UUID) -> str | None:
        """A new secret; the current one keeps signing as the previous until the next rotate
        (or its TTL); older ones are dropped."""
        secret = new_webhook_secret()
        async with self.engine.begin() as conn:
            current = (
                await conn.execute(
                    select(webhooks.c.secrets)
                    .where(webhooks.c.id == webhook_id, webhooks.c.active)
                    .with_for_update()
                )
            ).scalar_one_or_none()
            if current is None:
                return None
            await conn.execute(
                update(webhooks)
                .where(webhooks.c.id == webhook_id)
                .values(secrets=[secret, *current[:1]], secrets_rotated_at=func.now())
            )
            return secret

    @staticmethod
    async def active_subscriptions(conn: AsyncConnection) -> list[Subscription]:
        """Every active subscription with its owner's admin flag (revoked owners: none)."""
        # Once per projected batch: raw asyncpg, in the caller's transaction.
        rows = await (await driver_of(conn)).fetch(ACTIVE_SUBSCRIPTIONS)
        out = []
        for r in rows:
            owner, scopes = r["api_key_id"], r["scopes"]
            if owner is not None and (scopes is None or r["revoked_at"] is not None):
                continue
            out.append(
                Subscription(
                    id=r["id"],
                    url=r["url"],
                    events=tuple(r["events"]),
                    routes=tuple(r["routes"] or ()),
                    numbers=tuple(r["numbers"] or ()),
                    owner_id=owner,
                    owner_admin=owner is None or "admin" in (scopes or ()),
                )
            )
        return out
