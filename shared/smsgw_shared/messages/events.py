"""Events the workers publish back: status, incoming SMS parts, heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from smsgw_shared.messages.base import Payload, new_id, utcnow

StatusState = Literal[
    "sending",
    "sent",
    "failed",
    "rejected",
    "enroute",
    "accepted",
    "delivered",
    "undelivered",
    "expired",
]


class PartRef(BaseModel):
    """One submitted part and the id its provider (SMSC or modem TP-MR) gave it."""

    model_config = ConfigDict(frozen=True)

    index: int  # 1-based
    provider_id: str | None = None


class StatusEvent(Payload):
    """A state change of one message (or one of its parts) reported by a worker.

    `part` is None when the event concerns the whole message (sent, failed); delivery
    reports name the part they concern. Events may arrive twice or out of order: the
    inbound projection is idempotent by `event_id` and order-tolerant.
    """

    type: Literal["status"] = "status"
    event_id: str = Field(default_factory=new_id)
    message_id: str | None = None  # None for an unmatched delivery report
    state: StatusState
    route: str
    part: int | None = None
    parts: list[PartRef] = Field(default_factory=list)
    provider_id: str | None = None
    recipient: str | None = None  # for delivery reports matched by (route, TP-MR, recipient)
    error_code: str | None = None
    error: str | None = None
    retryable: bool = False
    occurred_at: datetime = Field(default_factory=utcnow)
    job_id: str | None = None

    def log_fields(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "state": self.state, "route": self.route}


class Concat(BaseModel):
    """Concatenation info of one part of a long incoming SMS (UDH 8/16-bit or SAR)."""

    model_config = ConfigDict(frozen=True)

    ref: int
    total: int
    seq: int  # 1-based
    ref_bits: Literal[8, 16] = 8


class InboundPart(Payload):
    """An incoming SMS, or one part of a long one; the inbound service reassembles."""

    type: Literal["inbound_part"] = "inbound_part"
    event_id: str = Field(default_factory=new_id)
    route: str
    sender: str
    recipient: str | None = None
    text: str
    encoding: str = "gsm7"
    concat: Concat | None = None
    received_at: datetime = Field(default_factory=utcnow)
    smsc_timestamp: datetime | None = None
    # The original text in hex when characters the store cannot hold (NUL, lone surrogates)
    # were replaced with U+FFFD in `text`: set by the inbound service (smsgw_inbound.storable),
    # or by a worker that decoded UCS-2 with lone surrogates (then the octets it received).
    raw_hex: str | None = None

    def log_fields(self) -> dict[str, Any]:
        return {"route": self.route, "inbound_event": self.event_id}


class Heartbeat(Payload):
    """Live state of one modem or bind, published every few seconds."""

    type: Literal["heartbeat"] = "heartbeat"
    route: str  # "modem:m1", "smpp:b1"
    kind: Literal["modem", "smpp"]
    state: str  # connected, connecting, disconnected, throttled, failed
    connected: bool
    signal_dbm: int | None = None
    operator: str | None = None
    queue_depth: int | None = None
    in_flight: int = 0
    details: dict[str, Any] = Field(default_factory=dict)
    sent_at: datetime = Field(default_factory=utcnow)
    interval: float = 5.0


class CancelNotice(Payload):
    """Broadcast by the API when it cancels a queued message; workers skip that job."""

    type: Literal["cancel"] = "cancel"
    message_id: str
    sent_at: datetime = Field(default_factory=utcnow)
