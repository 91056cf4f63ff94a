"""Live state of modems and binds, from their heartbeats."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_shared.store.repos.projection import lock_id
from smsgw_shared.store.schema import route_state


class RouteStateRepository:
    """All SQL about `route_state`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @staticmethod
    async def upsert(conn: AsyncConnection, row: dict[str, Any]) -> tuple[bool, str | None]:
        """Store a heartbeat unless a newer one is stored already. Returns (stored, the
        previous state or None for a route seen for the first time)."""
        # A route's first heartbeats may be handled concurrently: no row to lock yet.
        await conn.execute(
            select(func.pg_advisory_xact_lock(lock_id(("route_state", row["route"]))))
        )
        prev = (
            await conn.execute(
                select(route_state.c.state, route_state.c.last_seen)
                .where(route_state.c.route == row["route"])
                .with_for_update()
            )
        ).first()
        if prev is not None and prev.last_seen > row["last_seen"]:
            return False, prev.state
        stmt = pg_insert(route_state).values(**row)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[route_state.c.route],
                set_={k: stmt.excluded[k] for k in row if k != "route"},
            )
        )
        return True, prev.state if prev is not None else None

    async def all(self) -> list[dict[str, Any]]:
        """Every route's last known state."""
        async with self.engine.connect() as conn:
            res = await conn.execute(select(route_state).order_by(route_state.c.route))
            return [dict(r._mapping) for r in res]
