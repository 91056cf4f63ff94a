"""What every engine's connections are set to."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_statements_are_planned_for_their_parameters(engine: AsyncEngine) -> None:
    """No generic plans: a prepared lookup over an id array keeps using the indexes after
    its fifth execution (see `make_engine`)."""
    async with engine.connect() as conn:
        assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one() == (
            "force_custom_plan"
        )
        assert (await conn.execute(text("SHOW application_name"))).scalar_one() == "smsgw"
