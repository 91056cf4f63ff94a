"""The retention sweep: every `retention.interval`, each table loses what is older than
its setting (`[retention]`), in bounded batches, and the table sizes are measured."""

from __future__ import annotations

import logging
from datetime import timedelta

from smsgw_inbound import metrics
from smsgw_shared.config import RetentionConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.retention import POLICIES, RetentionRepository

log = logging.getLogger(__name__)

# Batches per table and pass: a pass stays short; a backlog (retention just turned on)
# shrinks by this many batches every interval.
MAX_BATCHES = 50
# Policies that follow another table's setting.
SETTING = {"inbound_parts": "inbound_days", "pending_reports": "messages_days"}


class Retention:
    """Deletes aged rows (see `smsgw_shared.store.repos.retention`)."""

    def __init__(self, repo: RetentionRepository, cfg: RetentionConfig) -> None:
        self.repo = repo
        self.cfg = cfg

    def days(self, policy_name: str) -> float:
        setting = SETTING.get(policy_name, f"{policy_name}_days")
        return float(getattr(self.cfg, setting))

    async def sweep(self) -> dict[str, int]:
        """One pass over every policy; rows deleted by policy."""
        now = utcnow()
        out: dict[str, int] = {}
        for policy in POLICIES:
            days = self.days(policy.name)
            if days <= 0:
                continue
            cutoff = now - timedelta(days=days)
            total = 0
            for _ in range(MAX_BATCHES):
                n = await self.repo.delete_older(policy, cutoff, self.cfg.batch_size)
                total += n
                if n < self.cfg.batch_size:
                    break
            if total:
                metrics.RETENTION_DELETED.labels(policy.name).inc(total)
                log.info(
                    "retention: %d %s rows older than %g days deleted", total, policy.name, days
                )
            out[policy.name] = total
        for table, size in (await self.repo.table_sizes()).items():
            metrics.TABLE_BYTES.labels(table).set(size)
        return out
