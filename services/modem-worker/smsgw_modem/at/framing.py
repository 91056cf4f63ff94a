"""AT line framing (V.25ter §5.7): bytes from the port to lines, prompts and garbage.

Pure code, no I/O. Responses are `<CR><LF>text<CR><LF>`; the `+CMGS` prompt is
`<CR><LF>> ` with no line end after it (TS 27.005 §3.5.1). Junk (line noise, binary bytes
from a modem in the wrong mode) is reported as garbage and skipped, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 4096  # longest legal line is a +CMGL/+CMGR PDU line (~360 hex digits)

FINAL_OK = frozenset({"OK", "CONNECT"})
FINAL_ERROR_PLAIN = frozenset(
    {"ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "COMMAND NOT SUPPORT"}
)

# Unsolicited result codes: TS 27.005 §3.4.1 / §3.5.1 (SMS), TS 27.007 §7/§8 (network),
# and the Huawei/ZTE noise a USB modem prints on its own (^RSSI every few seconds...).
URC_PREFIXES: tuple[str, ...] = (
    "+CMTI:",
    "+CDSI:",
    "+CMT:",
    "+CDS:",
    "+CBM:",
    "+CUSD:",
    "+CREG:",
    "+CGREG:",
    "+CEREG:",
    "+CRING:",
    "+CLIP:",
    "+CIEV:",
    "+STIN:",
    "+PACSP",
    "RING",
    "^RSSI:",
    "^HCSQ:",
    "^MODE:",
    "^BOOT:",
    "^SRVST:",
    "^SIMST:",
    "^SYSSTART",
    "^RFSWITCH:",
    "^DSFLOWRPT:",
    "^CEND:",
    "^ORIG:",
    "^CONF:",
    "^CONN:",
    "^STIN:",
    "^NDISSTAT:",
    "^SMMEMFULL:",
    "+ZUSIMR:",
    "+ZDONR:",
)

# URCs whose PDU follows on the next line (TS 27.005 §3.4.1: +CMT / +CDS in PDU mode).
TWO_LINE_URCS: tuple[str, ...] = ("+CMT:", "+CDS:", "+CBM:")


@dataclass(frozen=True, slots=True)
class Line:
    """One complete text line, without its terminator."""

    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """The `> ` prompt asking for the PDU of `+CMGS`/`+CMGW`."""


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that are not a valid AT line (binary junk, overlong line)."""

    data: bytes


Token = Line | Prompt | Garbage


_BAD_CHARS = frozenset({"\x7f", "\ufffd"})


def is_printable(text: str) -> bool:
    """True when the line looks like AT text (no control or undecodable characters)."""
    return all(c == "\t" or (c >= " " and c not in _BAD_CHARS) for c in text)


class LineSplitter:
    """Turns a byte stream into `Line`, `Prompt` and `Garbage` tokens."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> bytes:
        """Drop a partial line (after a reconnect); return what was dropped."""
        dropped = bytes(self._buf)
        self._buf.clear()
        return dropped

    @property
    def pending(self) -> bytes:
        """The partial line waiting for its terminator."""
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[Token]:
        """Add bytes; return the tokens now complete."""
        out: list[Token] = []
        for byte in data:
            if byte in (0x0D, 0x0A):
                if self._buf:
                    out.append(self._finish(bytes(self._buf)))
                    self._buf.clear()
                continue
            self._buf.append(byte)
            # The prompt has no terminator: recognise it as soon as its two bytes are in.
            if self._buf == b"> ":
                out.append(Prompt())
                self._buf.clear()
            elif len(self._buf) > MAX_LINE:
                out.append(Garbage(bytes(self._buf)))
                self._buf.clear()
        return out

    @staticmethod
    def _finish(raw: bytes) -> Token:
        # Ctrl-Z / ESC end the echo of a PDU typed after the prompt; drop them.
        raw = raw.strip(b"\x1a\x1b")
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return Garbage(raw)
        if text.startswith("> "):
            text = text[2:].strip()  # echo of the PDU on the prompt's line
        if not is_printable(text):
            return Garbage(raw)
        return Line(text)


def is_final_ok(line: str) -> bool:
    """`OK` (or `CONNECT`) ends a command successfully."""
    return line in FINAL_OK


def is_final_error(line: str) -> bool:
    """An error final result: `ERROR`, `+CME ERROR: n`, `+CMS ERROR: n`, `NO CARRIER`…"""
    return (
        line in FINAL_ERROR_PLAIN
        or line.startswith("+CME ERROR:")
        or line.startswith("+CMS ERROR:")
    )


def is_urc(line: str) -> bool:
    """True for a line a modem may send unsolicited."""
    return line.startswith(URC_PREFIXES)


def response_prefix(command: str) -> str | None:
    """The information-response prefix of a command: `AT+CREG?` → `+CREG:`."""
    body = command.strip()
    if body[:2].upper() != "AT":
        return None
    body = body[2:]
    if not body or body[0] not in "+^$%":
        return None
    end = 1
    while end < len(body) and (body[end].isalnum() or body[end] == "_"):
        end += 1
    return body[:end].upper() + ":"
