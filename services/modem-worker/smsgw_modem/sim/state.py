"""State of one simulated modem: identity, settings, SIM storage, faults, what was sent."""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Stored:
    """One message in SIM storage: TS 27.005 <stat> (0 unread, 1 read), PDU, TPDU length."""

    stat: int
    pdu: str
    length: int
    kind: str = "deliver"  # deliver | report


@dataclass
class SentPart:
    """One SMS-SUBMIT the simulated modem accepted, decoded for tests."""

    mr: int
    recipient: str
    text: str | None
    encoding: str
    udh: dict[str, int] | None
    srr: bool
    flash: bool
    validity: int | None
    pdu: str
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """JSON for the control API."""
        return asdict(self)


@dataclass
class Faults:
    """Injected faults (POST /modems/{n}/faults)."""

    hang: bool = False
    hang_until_reconnect: bool = False
    hang_until: float | None = None  # monotonic time
    cms_error: int | None = None
    cms_count: int = 0
    latency: float = 0.0  # every command
    send_latency: float = 0.0  # extra for AT+CMGS
    garbage_responses: int = 0  # prefix the next N responses with a junk line
    gone_until: float | None = None  # device absent (None: present)
    gone: bool = False

    def is_hung(self) -> bool:
        """True while the modem answers nothing."""
        if self.hang and self.hang_until is not None and time.monotonic() >= self.hang_until:
            self.hang = False
            self.hang_until = None
        return self.hang

    def to_json(self) -> dict[str, Any]:
        """JSON for the control API."""
        return {
            "hang": self.is_hung(),
            "hang_until_reconnect": self.hang_until_reconnect,
            "cms_error": self.cms_error,
            "cms_count": self.cms_count,
            "latency": self.latency,
            "send_latency": self.send_latency,
            "garbage_responses": self.garbage_responses,
            "gone": self.gone,
        }


@dataclass
class ReportSettings:
    """How the simulated network answers a status report request."""

    delay: float = 1.0
    outcome: str = "delivered"  # delivered | undelivered | enroute | expired | none
    status: int | None = None  # explicit TP-ST overrides `outcome`


# TS 23.040 §9.2.3.15 TP-ST used for each outcome
OUTCOME_STATUS = {"delivered": 0x00, "enroute": 0x20, "undelivered": 0x41, "expired": 0x46}


@dataclass
class UssdReply:
    """A configured USSD answer."""

    reply: str
    dcs: int = 15
    status: int = 0
    delay: float = 0.0


@dataclass
class ModemState:
    """Everything a simulated modem remembers."""

    n: int
    imei: str = ""
    imsi: str = ""
    iccid: str = ""
    own_number: str = ""
    manufacturer: str = "huawei"
    model: str = "E3131"
    revision: str = "21.158.00.00.143"
    operator: str = "SimNet"
    operator_numeric: str = "25099"
    rssi: int = 20
    reg_stat: int = 1
    echo: bool = True
    cmee: int = 0
    cmgf: int = 0
    cnmi: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    creg_mode: int = 0
    cops_format: int = 0
    csca: str = "+79000000010"
    cscs: str = "GSM"
    cfun: int = 1
    curc: bool = True
    pin: str = ""
    pin_ok: bool = True
    storage_size: int = 50
    storage: dict[int, Stored] = field(default_factory=dict)
    sent: list[SentPart] = field(default_factory=list)
    submitting: int = 0  # +CMGS PDUs taken and not answered yet (during send_latency)
    next_mr: int = 0
    faults: Faults = field(default_factory=Faults)
    reports: ReportSettings = field(default_factory=ReportSettings)
    ussd: dict[str, UssdReply] = field(default_factory=dict)
    ussd_default: UssdReply = field(default_factory=lambda: UssdReply("Баланс 123.45 р.", dcs=72))
    ussd_hex: bool = False  # answer DCS 15 as packed GSM-7 hex, like Huawei
    balance_text: str = "Balance: 10,50 USD"  # what the SIM-toolkit balance item shows
    stk_display: str | None = None
    noise_interval: float = 0.0

    @classmethod
    def create(cls, n: int) -> ModemState:
        """A modem with identity numbers derived from its index."""
        state = cls(
            n=n,
            imei=f"86{n:013d}",
            imsi=f"25099{n:010d}",
            iccid=f"8970199{n:012d}",
            own_number=f"+7999000{n:04d}",
        )
        state.next_mr = random.randrange(256)
        return state

    def reset_volatile(self) -> None:
        """What `ATZ` / a reboot (`AT+CFUN=1,1`) restores to defaults."""
        self.echo = True
        self.cmee = 0
        self.cmgf = 0
        self.cnmi = (0, 0, 0, 0, 0)
        self.creg_mode = 0
        self.cops_format = 0

    def take_mr(self) -> int:
        """The next TP-MR (wraps at 256, TS 23.040 §9.2.3.6)."""
        mr = self.next_mr
        self.next_mr = (mr + 1) % 256
        return mr

    def store(self, item: Stored) -> int | None:
        """Put a message in the first free slot; None when the storage is full."""
        for index in range(self.storage_size):
            if index not in self.storage:
                self.storage[index] = item
                return index
        return None

    def summary(self) -> dict[str, Any]:
        """JSON for GET /modems."""
        return {
            "n": self.n,
            "imei": self.imei,
            "imsi": self.imsi,
            "iccid": self.iccid,
            "own_number": self.own_number,
            "operator": self.operator,
            "rssi": self.rssi,
            "registered": self.reg_stat in (1, 5),
            "stored": len(self.storage),
            "sent": len(self.sent),
            "submitting": self.submitting,
            "echo": self.echo,
            "cnmi": list(self.cnmi),
            "faults": self.faults.to_json(),
            "reports": asdict(self.reports),
            "noise_interval": self.noise_interval,
        }
