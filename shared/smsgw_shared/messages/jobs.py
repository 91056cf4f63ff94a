"""Send jobs: what the API (or the outbox relay, or the scheduler) asks a worker to send."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from smsgw_shared.messages.base import Payload, new_id, utcnow

Encoding = Literal["gsm7", "ucs2"]


class SendJob(Payload):
    """One recipient's message. The worker splits `text` into parts itself.

    `job_id` is stable across redeliveries and retries of the same message, so a worker
    that already published the outcome of a job can recognise a redelivery.
    """

    type: Literal["send_job"] = "send_job"
    job_id: str = Field(default_factory=new_id)
    message_id: str
    batch_id: str | None = None
    to: str
    sender: str | None = None
    text: str
    encoding: Encoding = "gsm7"
    parts: int = 1
    flash: bool = False
    validity: int | None = None  # seconds
    dlr: bool = True
    route: str
    attempt: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    reference: str | None = None

    def log_fields(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "route": self.route, "attempt": self.attempt}
