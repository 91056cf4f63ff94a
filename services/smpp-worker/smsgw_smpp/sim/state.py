"""The SMSC simulator's behaviour knobs and what it recorded.

Recording must stay cheap (the simulator answers well over 10,000 submit_sm/s): a submit
is kept as its decoded `Pdu` and the id it got; texts are decoded and long messages
reassembled only when someone asks (`GET /sent`).
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from smsgw_smpp import pdu as sp
from smsgw_smpp.status import parse_status

SimIdFormat = Literal["hex", "decimal"]
ReceiptForm = Literal["both", "tlv", "text"]

# Appendix B stat word → §5.2.28 message_state
STAT_STATE = {
    "ENROUTE": 1,
    "DELIVRD": 2,
    "EXPIRED": 3,
    "DELETED": 4,
    "UNDELIV": 5,
    "ACCEPTD": 6,
    "UNKNOWN": 7,
    "REJECTD": 8,
}
FINAL_STATES = frozenset({2, 3, 4, 5, 8})


@dataclass
class SimConfig:
    """Everything `POST /config` may change; see docs/smpp.md for the meaning of each."""

    system_id: str = "smsgw"
    password: str = "secret"
    id_format: SimIdFormat = "hex"
    receipt_id_format: Literal["same", "hex", "decimal"] = "same"
    receipt_form: ReceiptForm = "both"
    dlr_delay: float = 1.0
    outcomes: dict[str, float] = field(default_factory=lambda: {"DELIVRD": 1.0})
    receipt_errors: dict[str, str] = field(default_factory=dict)  # stat → err code
    early_receipts: bool = False  # receipt written before the submit_sm_resp
    duplicate_receipts: bool = False  # every receipt sent twice
    intermediate: bool = False  # an ENROUTE notification before the final receipt
    tps: float = 0.0  # 0: unlimited; above it submit_sm gets ESME_RTHROTTLED
    submit_latency: float = 0.0  # seconds before each submit_sm_resp
    hold: bool = False  # keep submit_sm_resp back until hold is switched off
    drop_after: int | None = None  # close the session after N more submit_sm (unanswered)
    errors: list[list[int]] = field(default_factory=list)  # [[status, count], ...]

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON object of changes; unknown keys raise KeyError."""
        for key, value in changes.items():
            if key not in self.__dataclass_fields__:
                raise KeyError(key)
            if key == "errors":
                setattr(self, key, [[parse_status(s), int(n)] for s, n in value])
            else:
                setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as JSON-friendly values."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "password"}

    def take_error(self) -> int:
        """The injected status for the next submit_sm, or 0."""
        while self.errors:
            status, count = self.errors[0]
            if count <= 0:
                self.errors.pop(0)
                continue
            self.errors[0][1] = count - 1
            return status
        return 0

    def pick_outcome(self) -> str:
        """A stat word from the configured mix."""
        if len(self.outcomes) == 1:
            return next(iter(self.outcomes))
        words = list(self.outcomes)
        return random.choices(words, weights=[self.outcomes[w] for w in words])[0]


@dataclass(slots=True)
class Submitted:
    """One submit_sm as received, with the id it was given and its current state."""

    message_id: str
    pdu: sp.Pdu
    system_id: str
    received_at: float
    state: int = 1  # ENROUTE until a receipt says otherwise
    final_date: str = ""
    error: int = 0


class IdSource:
    """Unique SMSC ids: hex `00002B3C1F` or decimal `0000123456`, from a random start."""

    def __init__(self) -> None:
        self._counter = itertools.count(random.randrange(1 << 24, 1 << 32))

    def next(self, fmt: SimIdFormat) -> str:
        n = next(self._counter)
        return f"{n:010X}" if fmt == "hex" else f"{n:010d}"


class TokenBucket:
    """The simulated SMSC's own TPS limit (burst of a tenth of a second)."""

    def __init__(self) -> None:
        self.tokens = float("inf")  # starts full (clipped to the burst on first use)
        self.stamp = time.monotonic()

    def allow(self, tps: float) -> bool:
        if tps <= 0:
            return True
        now = time.monotonic()
        burst = max(1.0, tps / 10)
        self.tokens = min(burst, self.tokens + (now - self.stamp) * tps)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class SimStats:
    """Counters for `GET /stats`."""

    binds: int = 0
    bind_failures: int = 0
    submits: int = 0
    accepted: int = 0
    throttled: int = 0
    errors_injected: int = 0
    receipts_sent: int = 0
    deliver_sm_sent: int = 0
    deliver_resp: dict[str, int] = field(default_factory=dict)
    enquire_links: int = 0
    queries: int = 0
    generic_nacks_received: int = 0
    bad_pdus: int = 0
    disconnects: int = 0
    unbinds_received: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
