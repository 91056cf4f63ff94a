"""Named AT errors: final result codes mapped to exceptions with the spec's meanings.

`+CME ERROR` codes are from 3GPP TS 27.007 §9.2, `+CMS ERROR` codes from TS 27.005 §3.2.5
(0..127: RP-cause of TS 24.011 Annex E-2; 128..255: TP-FCS of TS 23.040 §9.2.3.22).
"""

from __future__ import annotations


class AtError(Exception):
    """Root of every error raised by the AT engine."""

    code_name = "AT_ERROR"

    @property
    def error_code(self) -> str:
        """A stable code for events and logs, e.g. `CMS_500`, `AT_TIMEOUT`."""
        return self.code_name

    @property
    def temporary(self) -> bool:
        """True when trying again later (or on another modem) may succeed."""
        return True


class AtTimeout(AtError):
    """The modem did not finish answering a command in time."""

    code_name = "AT_TIMEOUT"


class PortClosed(AtError):
    """The port went away (device unplugged, socket closed) or was closed by us."""

    code_name = "PORT_CLOSED"


class CommandError(AtError):
    """A plain `ERROR` final result (V.25ter): command unknown or not allowed now."""

    code_name = "AT_ERROR"

    def __init__(self, command: str, text: str = "ERROR") -> None:
        super().__init__(f"{command!r} failed: {text}")
        self.command = command
        self.text = text


# TS 27.007 §9.2.1 / §9.2.2
CME_MEANINGS: dict[int, str] = {
    0: "phone failure",
    1: "no connection to phone",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    100: "unknown",
}

# TS 27.005 §3.2.5 plus the RP-causes (TS 24.011 Annex E-2) and TP-FCS (TS 23.040 §9.2.3.22)
# a modem passes through.
CMS_MEANINGS: dict[int, str] = {
    1: "unassigned (unallocated) number",
    8: "operator determined barring",
    10: "call barred",
    21: "short message transfer rejected",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable, unspecified",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    81: "invalid short message transfer reference value",
    95: "invalid message, unspecified",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    99: "information element non-existent or not implemented",
    111: "protocol error, unspecified",
    127: "interworking, unspecified",
    128: "telematic interworking not supported",
    129: "short message type 0 not supported",
    130: "cannot replace short message",
    143: "unspecified TP-PID error",
    144: "data coding scheme (alphabet) not supported",
    145: "message class not supported",
    159: "unspecified TP-DCS error",
    160: "command cannot be actioned",
    161: "command unsupported",
    175: "unspecified TP-Command error",
    176: "TPDU not supported",
    192: "SC busy",
    193: "no SC subscription",
    194: "SC system failure",
    195: "invalid SME address",
    196: "destination SME barred",
    197: "SM rejected - duplicate SM",
    198: "TP-VPF not supported",
    199: "TP-VP not supported",
    208: "SIM SMS storage full",
    209: "no SMS storage capability in SIM",
    210: "error in MS",
    211: "memory capacity exceeded",
    212: "SIM application toolkit busy",
    213: "SIM data download error",
    255: "unspecified error cause",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}

# Causes that no retry can fix: the number, the subscription or the PDU itself is wrong.
CMS_PERMANENT: frozenset[int] = frozenset(
    {1, 8, 10, 21, 28, 29, 30, 50, 69, 95, 96, 97, 99}
    | set(range(128, 192))  # TP-PID / TP-DCS / TP-Command / TPDU errors
    | {193, 195, 196, 197, 198, 199}
    | {302, 303, 304, 305, 321, 340}
)

CME_PERMANENT: frozenset[int] = frozenset({3, 4, 16, 21, 22, 24, 25})


class CmeError(CommandError):
    """`+CME ERROR: <n>`: a mobile equipment error (TS 27.007 §9.2)."""

    def __init__(self, command: str, code: int | None, text: str = "") -> None:
        self.code = code
        self.meaning = text or CME_MEANINGS.get(code if code is not None else -1, "unknown")
        super().__init__(
            command, f"+CME ERROR: {code if code is not None else '?'} ({self.meaning})"
        )
        self.text = self.meaning

    @property
    def error_code(self) -> str:
        return f"CME_{self.code}" if self.code is not None else "CME_ERROR"

    @property
    def temporary(self) -> bool:
        return self.code not in CME_PERMANENT


class CmsError(CommandError):
    """`+CMS ERROR: <n>`: a message service failure (TS 27.005 §3.2.5)."""

    def __init__(self, command: str, code: int | None, text: str = "") -> None:
        self.code = code
        if code is not None and code >= 512:
            default = "manufacturer specific error"
        else:
            default = CMS_MEANINGS.get(code if code is not None else -1, "unknown error")
        self.meaning = text or default
        super().__init__(
            command, f"+CMS ERROR: {code if code is not None else '?'} ({self.meaning})"
        )
        self.text = self.meaning

    @property
    def error_code(self) -> str:
        return f"CMS_{self.code}" if self.code is not None else "CMS_ERROR"

    @property
    def temporary(self) -> bool:
        return self.code not in CMS_PERMANENT


class SimPinRequired(CmeError):
    """The SIM wants its PIN (`+CME ERROR: 11`) and none or a wrong one is configured."""


class SimNotInserted(CmeError):
    """No SIM in the modem (`+CME ERROR: 10`)."""


_CME_CLASSES: dict[int, type[CmeError]] = {10: SimNotInserted, 11: SimPinRequired}


def _code_or_text(value: str) -> tuple[int | None, str]:
    value = value.strip()
    try:
        return int(value), ""
    except ValueError:
        return None, value  # verbose mode (AT+CMEE=2) gives text instead of a number


def final_error(command: str, line: str) -> CommandError:
    """Map an error final result line (`ERROR`, `+CME ERROR: n`, `+CMS ERROR: n`) to an error."""
    if line.startswith("+CME ERROR:"):
        code, text = _code_or_text(line[len("+CME ERROR:") :])
        cls = _CME_CLASSES.get(code, CmeError) if code is not None else CmeError
        return cls(command, code, text)
    if line.startswith("+CMS ERROR:"):
        code, text = _code_or_text(line[len("+CMS ERROR:") :])
        return CmsError(command, code, text)
    return CommandError(command, line)
