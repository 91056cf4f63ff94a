"""Who is calling: API keys presented as Bearer, X-API-Key, Basic (name:secret), or the
compat APIs' own parameters. A short in-process cache keeps the hot path off the store."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import time
from collections.abc import Awaitable, Callable

from smsgw_shared.store.repos.keys import ApiKey, KeyRepository, hash_secret

CACHE_TTL = 5.0  # seconds: a revoked key stops working within this time


class KeyCache:
    """Resolves secrets to keys, caching hits and misses for `CACHE_TTL` seconds."""

    def __init__(self, repo: KeyRepository, ttl: float = CACHE_TTL) -> None:
        self.repo = repo
        self.ttl = ttl
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        # One store lookup per secret at a time: 50 concurrent requests with a cold cache
        # would otherwise make 50 identical queries.
        self._inflight: dict[str, asyncio.Future[ApiKey | None]] = {}

    async def by_secret(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        if not secret or len(secret) > 256:
            return None
        return await self._lookup(hash_secret(secret), lambda: self.repo.by_secret(secret))

    async def _lookup(self, h: str, fetch: Callable[[], Awaitable[ApiKey | None]]) -> ApiKey | None:
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(h)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[ApiKey | None] = asyncio.get_running_loop().create_future()
        self._inflight[h] = fut
        try:
            key = await fetch()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            self._inflight.pop(h, None)
        fut.set_result(key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[h] = (now + self.ttl, key)
        return key

    async def by_name_and_secret(self, name: str, secret: str) -> ApiKey | None:
        """The key if `name` is its name and `secret` its secret (Basic, login/psw)."""
        key = await self.by_secret(secret)
        if key is None or not hmac.compare_digest(key.name.encode(), name.encode()):
            return None
        return key

    async def is_active(self, key: ApiKey) -> bool:
        """Whether `key` still works (not revoked): what streams ask every `ttl` seconds,
        so a revoked key stops streaming within the cache's TTL in every process."""
        return (
            await self._lookup(key.secret_hash, lambda: self.repo.by_hash(key.secret_hash))
            is not None
        )

    def forget(self) -> None:
        self._cache.clear()


def parse_basic(header: str) -> tuple[str, str] | None:
    """`Basic base64(name:secret)` → (name, secret)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, secret = decoded.partition(":")
    return (name, secret) if sep else None


def bearer(header: str) -> str | None:
    """`Bearer <secret>` → secret."""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class RateLimiter:
    """Per-key token buckets, in-process (N API processes allow N times the rate).

    A bucket holds up to max(1, rate) tokens and refills at `rate` a second. A call is
    admitted while the bucket holds a token; it then takes what it costs — one for most
    calls, one per recipient for a send — and may leave the bucket in debt, so a
    1,000-recipient request from a key of 100/s is let through once and the key then waits
    10 s: the average holds whatever the request size, and no request is refused forever.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, key_id: str, rate: float, now: float) -> float:
        burst = max(1.0, rate)
        tokens, last = self._buckets.get(key_id, (burst, now))
        return min(burst, tokens + (now - last) * rate)

    def admit(self, key_id: str, rate: float) -> float:
        """0 if a call may start now (nothing taken), else the seconds to wait."""
        if rate <= 0:
            return 0.0
        tokens = self._tokens(key_id, rate, time.monotonic())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate

    def check(self, key_id: str, rate: float, cost: float = 1.0) -> float:
        """Admit and take `cost` tokens: 0 if allowed now, else the seconds to wait (for
        Retry-After; nothing is taken then)."""
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens = self._tokens(key_id, rate, now)
        if tokens >= 1.0:
            self._buckets[key_id] = (tokens - max(cost, 0.0), now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1.0 - tokens) / rate
