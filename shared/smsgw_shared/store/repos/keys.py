"""API keys: hashed secrets, scopes, allowed numbers and senders, rate limits."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_shared.store.schema import api_keys

SCOPES = ("send", "read", "admin", "modems", "webhooks")
SECRET_PREFIX = "sgw_"


def new_secret() -> str:
    """A fresh key secret: 32 random bytes, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 of the secret: secrets are 256-bit random, so a slow KDF buys nothing and
    lookup by hash keeps verification constant-time with respect to the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """What listings show of a secret: enough to recognise a generated one, never a whole
    (possibly short, user-chosen) secret."""
    if secret.startswith(SECRET_PREFIX) and len(secret) > 20:
        return secret[:12]
    return secret[:2]


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    id: uuid.UUID
    name: str
    secret_prefix: str
    scopes: tuple[str, ...]
    allowed_prefixes: tuple[str, ...] = ()
    allowed_regex: str | None = None
    allowed_senders: tuple[str, ...] = ()
    rate_limit: float = 0.0
    routes: tuple[str, ...] = ()  # empty: every route; else the only routes it may use and see
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    secret_hash: str = field(default="", repr=False)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def public(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "name": self.name,
            "prefix": self.secret_prefix,
            "scopes": list(self.scopes),
            "allowed_prefixes": list(self.allowed_prefixes),
            "allowed_regex": self.allowed_regex,
            "allowed_senders": list(self.allowed_senders),
            "rate_limit": self.rate_limit,
            "routes": list(self.routes),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


class DuplicateKeyName(ValueError):
    """A key with this name exists already."""


def _row_to_key(row: object) -> ApiKey:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiKey(
        id=m["id"],
        name=m["name"],
        secret_prefix=m["secret_prefix"],
        scopes=tuple(m["scopes"]),
        allowed_prefixes=tuple(m["allowed_prefixes"] or ()),
        allowed_regex=m["allowed_regex"],
        allowed_senders=tuple(m["allowed_senders"] or ()),
        rate_limit=m["rate_limit"],
        routes=tuple(m["routes"] or ()),
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
        secret_hash=m["secret_hash"],
    )


class KeyRepository:
    """All SQL about API keys."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self,
        name: str,
        scopes: list[str],
        *,
        secret: str | None = None,
        allowed_prefixes: list[str] | None = None,
        allowed_regex: str | None = None,
        allowed_senders: list[str] | None = None,
        rate_limit: float = 0.0,
        routes: list[str] | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its secret (shown once)."""
        secret = secret or new_secret()
        values = {
            "id": uuid.uuid4(),
            "name": name,
            "secret_hash": hash_secret(secret),
            "secret_prefix": display_prefix(secret),
            "scopes": sorted(set(scopes)),
            "allowed_prefixes": allowed_prefixes or [],
            "allowed_regex": allowed_regex,
            "allowed_senders": allowed_senders or [],
            "rate_limit": rate_limit,
            "routes": list(dict.fromkeys(routes or [])),
        }
        stmt = insert(api_keys).values(**values).on_conflict_do_nothing().returning(*api_keys.c)
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise DuplicateKeyName(f"a key named {name!r}, or with this secret, exists already")
        return _row_to_key(row), secret

    async def ensure(self, name: str, secret: str, scopes: list[str]) -> ApiKey:
        """Make sure a key with this secret exists (bootstrap key). A key an admin revoked
        stays revoked: the next start logs a warning and does not re-enable it."""
        h = hash_secret(secret)
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.secret_hash == h))).first()
            if row is not None:
                if row._mapping["revoked_at"] is not None:
                    logging.getLogger(__name__).warning(
                        "the bootstrap key %r (id %s) is revoked and is not re-enabled; "
                        "set SMSGW_BOOTSTRAP_API_KEY to a new secret, or unset it",
                        row._mapping["name"],
                        row._mapping["id"],
                    )
                    return _row_to_key(row)
                if set(row._mapping["scopes"]) != set(scopes):
                    row = (
                        await conn.execute(
                            update(api_keys)
                            .where(api_keys.c.secret_hash == h)
                            .values(scopes=sorted(scopes))
                            .returning(*api_keys.c)
                        )
                    ).first()
                return _row_to_key(row)
            # The name may be taken by an older bootstrap key: pick a free variant.
            taken = {
                r[0]
                for r in await conn.execute(
                    select(api_keys.c.name).where(api_keys.c.name.like(f"{name}%"))
                )
            }
            final = name
            n = 1
            while final in taken:
                n += 1
                final = f"{name}-{n}"
        key, _ = await self.create(final, scopes, secret=secret)
        return key

    async def by_secret(self, secret: str) -> ApiKey | None:
        """The active key with this secret, if any."""
        return await self.by_hash(hash_secret(secret))

    async def by_hash(self, h: str) -> ApiKey | None:
        """The active key whose secret hashes to `h`, if any."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(api_keys).where(
                        api_keys.c.secret_hash == h, api_keys.c.revoked_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            return None
        key = _row_to_key(row)
        # Defence in depth: compare the hashes in constant time too.
        return key if hmac.compare_digest(key.secret_hash, h) else None

    async def list(self, include_revoked: bool = False) -> list[ApiKey]:
        stmt = select(api_keys).order_by(api_keys.c.created_at)
        if not include_revoked:
            stmt = stmt.where(api_keys.c.revoked_at.is_(None))
        async with self.engine.connect() as conn:
            return [_row_to_key(r) for r in await conn.execute(stmt)]

    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return _row_to_key(row) if row else None

    async def find(self, id_or_name: str) -> ApiKey | None:
        """A key by id or by name."""
        try:
            return await self.get(uuid.UUID(id_or_name))
        except ValueError:
            pass
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.name == id_or_name))
            ).first()
        return _row_to_key(row) if row else None

    async def revoke(self, key_id: uuid.UUID) -> bool:
        """Revoke a key; False if there is no such active key."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=func.now())
            )
        return bool(res.rowcount)
