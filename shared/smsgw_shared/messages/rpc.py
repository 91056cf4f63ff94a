"""Request/reply payloads between the API and the modem workers (USSD, balance)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from smsgw_shared.messages.base import Payload, new_id


class ModemRequest(Payload):
    """Ask one modem for a USSD session or its balance."""

    type: Literal["modem_request"] = "modem_request"
    request_id: str = Field(default_factory=new_id)
    modem_id: str
    action: Literal["ussd", "balance"]
    code: str | None = None  # USSD string, for action=ussd
    timeout: float = 30.0
    reply_to: str  # queue the reply goes to (AMQP direct reply-to)


class ModemReply(Payload):
    """What the modem answered; `raw` is always the modem's text."""

    type: Literal["modem_reply"] = "modem_reply"
    request_id: str
    modem_id: str
    ok: bool
    raw: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    error: str | None = None
