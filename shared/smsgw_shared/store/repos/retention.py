"""Data that ages: deleting what is older than its retention, a bounded batch at a time.

Each policy deletes the oldest rows of one table through an index on its time column, at
most `limit` rows a statement (short transactions, no long locks on a live table), and
skips rows another process is deleting (`SKIP LOCKED`), so several inbound processes may
run it at once. Children go with their parents: a message's parts and history in the same
transaction (they have no foreign key: migration 0010), a delivery's attempts by
`ON DELETE CASCADE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class Policy:
    """What one retention setting deletes: rows of `table` whose `where` holds before the
    cutoff (`:cutoff`), oldest first by `order`."""

    name: str  # the retention setting (`messages_days` …) and the metric's label
    table: str
    where: str
    order: str
    # Tables whose rows (by this column) go with the deleted ones, in the same transaction.
    children: tuple[tuple[str, str], ...] = ()

    def statement(self) -> str:
        """Delete the oldest rows past the cutoff (at most `:limit`); returns their ids."""
        return (
            f"DELETE FROM {self.table} WHERE id IN ("  # noqa: S608 - fixed identifiers
            f"SELECT id FROM {self.table} WHERE {self.where} "
            f"ORDER BY {self.order} LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING id"
        )

    def child_statements(self) -> list[str]:
        """Delete the children of the rows deleted (their ids in `:ids`). A statement of its
        own, after the parents': its snapshot then holds every child committed by whoever
        had a parent locked before, which one statement's single snapshot would miss."""
        return [
            f"DELETE FROM {t} WHERE {col} = ANY(:ids)"  # noqa: S608 - fixed identifiers
            for t, col in self.children
        ]


POLICIES = (
    # A scheduled send waits for its time, however old its row.
    Policy(
        "messages",
        "messages",
        "created_at < :cutoff AND status <> 'scheduled'",
        "created_at",
        (("message_parts", "message_id"), ("message_events", "message_id")),
    ),
    Policy("event_log", "event_log", "created_at < :cutoff", "id"),
    # Pending deliveries are still being tried.
    Policy(
        "webhook_deliveries",
        "webhook_deliveries",
        "created_at < :cutoff AND status <> 'pending'",
        "created_at",
    ),
    Policy("inbound", "inbound_messages", "created_at < :cutoff", "created_at"),
    # Delivery reports that never found their message (they match within days).
    Policy("pending_reports", "pending_reports", "received_at < :cutoff", "received_at"),
    # Parts of messages assembled long ago (open parts go by the reassembly timeout).
    Policy(
        "inbound_parts",
        "inbound_parts",
        "message_id IS NOT NULL AND received_at < :cutoff",
        "received_at",
    ),
)

TABLES = (
    "messages",
    "message_parts",
    "message_events",
    "event_log",
    "webhook_deliveries",
    "webhook_attempts",
    "inbound_messages",
    "inbound_parts",
    "outbox",
    "pending_reports",
)


class RetentionRepository:
    """All SQL about retention."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def delete_older(self, policy: Policy, cutoff: datetime, limit: int) -> int:
        """Delete up to `limit` rows of the policy older than `cutoff`; how many went."""
        async with self.engine.begin() as conn:
            res = await conn.execute(text(policy.statement()), {"cutoff": cutoff, "limit": limit})
            ids = [r[0] for r in res]
            if ids:
                for stmt in policy.child_statements():
                    await conn.execute(text(stmt), {"ids": ids})
        return len(ids)

    async def table_sizes(self) -> dict[str, int]:
        """Bytes on disk of each table, indexes and TOAST included."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT t, pg_total_relation_size(to_regclass(t))"
                    " FROM unnest(CAST(:tables AS text[])) AS t"
                ),
                {"tables": list(TABLES)},
            )
            return {r[0]: int(r[1] or 0) for r in rows}
