"""The send job of a stored message: what the outbox relay publishes for a body-less row
(an accepted job the hot path did not publish, or a scheduled send now due)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smsgw_shared.messages import SendJob


def stored_job(row: Mapping[str, Any]) -> SendJob:
    """The job of a `messages` row: the same job (id and all) the API built when it
    accepted the message, so a worker that already sent it recognises a second copy."""
    return SendJob(
        job_id=str(row["job_id"]),
        message_id=str(row["id"]),
        batch_id=str(row["batch_id"]),
        to=row["to_number"],
        sender=row["sender"],
        text=row["text"],
        encoding=row["encoding"],
        parts=row["parts_count"],
        flash=row["flash"],
        validity=row["validity"],
        dlr=row["dlr"],
        route=row["route"],
        reference=row["reference"],
        created_at=row["created_at"],
    )
