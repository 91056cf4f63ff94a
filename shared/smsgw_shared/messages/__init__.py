"""Typed, versioned queue payloads (JSON on the wire)."""

from smsgw_shared.messages.base import Payload, PayloadError, new_id, utcnow
from smsgw_shared.messages.events import (
    CancelNotice,
    Concat,
    Heartbeat,
    InboundPart,
    PartRef,
    StatusEvent,
)
from smsgw_shared.messages.jobs import SendJob
from smsgw_shared.messages.rpc import ModemReply, ModemRequest

__all__ = [
    "CancelNotice",
    "Concat",
    "Heartbeat",
    "InboundPart",
    "ModemReply",
    "ModemRequest",
    "PartRef",
    "Payload",
    "PayloadError",
    "SendJob",
    "StatusEvent",
    "new_id",
    "utcnow",
]
