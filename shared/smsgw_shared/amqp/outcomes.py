"""What a handler may raise to tell the consumer what to do with a message.

Returning normally means "done": the message is acked. Handlers never see aio-pika.
"""

from __future__ import annotations

from dataclasses import dataclass


class Outcome(Exception):
    """Base of handler outcomes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(Outcome):
    """Try again after a delay (via a delay queue); dead-lettered once attempts run out."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class PermanentFailure(Outcome):
    """This message can never succeed; it goes to the DLQ with the reason."""


class Poison(Outcome):
    """The message itself is unusable (undecodable, wrong version); DLQ with the reason."""


class Requeue(Outcome):
    """Give the message back now (e.g. the device went away mid-job; another may take it)."""


@dataclass(frozen=True)
class DeliveryInfo:
    """What a handler may know about the delivery it is handling."""

    queue: str
    attempt: int  # 0 for the first try; counts retries through delay queues
    max_attempts: int
    redelivered: bool  # the broker delivered it before (a consumer died holding it)
    message_id: str | None = None
    reply_to: str | None = None  # for request/reply: where the answer goes
    correlation_id: str | None = None

    @property
    def last_attempt(self) -> bool:
        return self.attempt + 1 >= self.max_attempts
