"""SMPP 3.4 command_status values (§5.1.3) and what the worker does about each."""

from __future__ import annotations

from typing import Final

ESME_ROK: Final = 0x00
ESME_RINVMSGLEN: Final = 0x01
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RINVBNDSTS: Final = 0x04
ESME_RALYBND: Final = 0x05
ESME_RSYSERR: Final = 0x08
ESME_RINVSRCADR: Final = 0x0A
ESME_RINVDSTADR: Final = 0x0B
ESME_RINVMSGID: Final = 0x0C
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
ESME_RMSGQFUL: Final = 0x14
ESME_RSUBMITFAIL: Final = 0x45
ESME_RTHROTTLED: Final = 0x58
ESME_RQUERYFAIL: Final = 0x67
ESME_RX_T_APPN: Final = 0x64
ESME_RUNKNOWNERR: Final = 0xFF

NAMES: Final[dict[int, str]] = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x06: "ESME_RINVPRTFLG",
    0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME",
    0x40: "ESME_RINVDESTFLAG",
    0x42: "ESME_RINVSUBREP",
    0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x53: "ESME_RINVSYSTYP",
    0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL",
    0xC0: "ESME_RINVOPTPARSTREAM",
    0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN",
    0xC3: "ESME_RMISSINGOPTPARAM",
    0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE",
    0xFF: "ESME_RUNKNOWNERR",
}
BY_NAME: Final = {v: k for k, v in NAMES.items()}

# Slow down and try again: the SMSC is overloaded, not refusing the message (§5.1.3).
THROTTLE: Final = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})
# Try again later (delay queue): the SMSC had a problem, the message may well pass next time.
# 0x45 RSUBMITFAIL and 0xFE/0xFF are vague; operators treat them as temporary, so do we.
TRANSIENT: Final = THROTTLE | frozenset(
    {ESME_RSYSERR, ESME_RINVBNDSTS, ESME_RSUBMITFAIL, ESME_RX_T_APPN, 0xFE, ESME_RUNKNOWNERR}
)


def status_name(status: int) -> str:
    """`ESME_RINVDSTADR` for 0x0B; vendor codes as `0x00000401`."""
    return NAMES.get(status, f"0x{status:08x}")


def is_transient(status: int) -> bool:
    """True when a retry may succeed (throttling, queue full, system error…)."""
    return status in TRANSIENT


def parse_status(value: str | int) -> int:
    """A status from a name (`ESME_RTHROTTLED`), a number or a hex string."""
    if isinstance(value, int):
        return value
    v = value.strip()
    if v.upper() in BY_NAME:
        return BY_NAME[v.upper()]
    return int(v, 16) if v.lower().startswith("0x") else int(v)
