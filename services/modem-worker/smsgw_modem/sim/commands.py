"""The simulated modem's AT interpreter: V.250 command lines, general and network commands.

SMS, USSD and SIM-toolkit commands are in `sim.sms_commands`. Unknown commands answer
`ERROR`, as a real modem does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smsgw_shared.sms import gsm7, ucs2

if TYPE_CHECKING:
    from smsgw_modem.sim.device import SimDevice
    from smsgw_modem.sim.session import Session
    from smsgw_modem.sim.state import UssdReply


class CommandFailed(Exception):
    """The command fails with the given final result."""

    def __init__(self, kind: str = "ERROR", code: int | None = None) -> None:
        super().__init__(kind, code)
        self.kind = kind
        self.code = code


def cme(code: int) -> CommandFailed:
    """A `+CME ERROR` (TS 27.007 §9.2)."""
    return CommandFailed("CME", code)


def cms(code: int) -> CommandFailed:
    """A `+CMS ERROR` (TS 27.005 §3.2.5)."""
    return CommandFailed("CMS", code)


@dataclass
class Prompt:
    """The command asks for a PDU (`> `) of `length` octets."""

    length: int


Result = list[str] | Prompt
Handler = Callable[["SimDevice", "Session", str, str], Awaitable[Result]]
HANDLERS: dict[str, Handler] = {}


def handler(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for command names such as `+CSQ` or `E`."""

    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


def split_line(line: str) -> list[tuple[str, str, str]] | None:
    """`ATE0+CMEE=1;+CREG?` → [(E, set, 0), (+CMEE, set, 1), (+CREG, read, '')] (V.250 §5.3)."""
    if line[:2].upper() != "AT":
        return None
    body, i, out = line[2:], 0, []
    while i < len(body):
        c = body[i]
        if c in " ;":
            i += 1
            continue
        if c in "+^$%":
            j, quoted = i + 1, False
            while j < len(body) and (quoted or body[j] != ";"):
                quoted ^= body[j] == '"'
                j += 1
            out.append(_op(body[i:j]))
            i = j
            continue
        if c == "&" or c.isalpha():
            j = i + (2 if c == "&" else 1)
            name = body[i:j].upper()
            if name == "S":
                while j < len(body) and (body[j].isdigit() or body[j] in "=?"):
                    j += 1
                out.append(("S", "set", body[i + 1 : j]))
            else:
                k = j
                while k < len(body) and body[k].isdigit():
                    k += 1
                out.append((name, "set", body[j:k]))
                j = k
            i = j
            continue
        return None
    return out


def _op(text: str) -> tuple[str, str, str]:
    name_end = 1
    while name_end < len(text) and (text[name_end].isalnum() or text[name_end] == "_"):
        name_end += 1
    name, rest = text[:name_end].upper(), text[name_end:]
    if rest == "?":
        return name, "read", ""
    if rest == "=?":
        return name, "test", ""
    if rest.startswith("="):
        return name, "set", rest[1:]
    return name, "exec", rest


def format_error(device: SimDevice, exc: CommandFailed) -> str:
    """The final result of a failed command per `+CMEE` (TS 27.007 §9.1)."""
    if exc.kind == "CMS":
        return f"+CMS ERROR: {exc.code}"
    if exc.kind == "CME" and device.state.cmee:
        return f"+CME ERROR: {exc.code}"
    return "ERROR"


async def run_line(device: SimDevice, session: Session, line: str) -> None:
    """Run every command of a command line; stop at the first error."""
    from smsgw_modem.sim import sms_commands  # noqa: F401 - registers the SMS handlers

    commands = split_line(line)
    if commands is None:
        device.answer(session, [], "ERROR")
        return
    lines: list[str] = []
    for name, op, args in commands:
        fn = HANDLERS.get(name)
        if fn is None:
            device.answer(session, lines, "ERROR")
            return
        try:
            result = await fn(device, session, op, args)
        except CommandFailed as exc:
            device.answer(session, lines, format_error(device, exc))
            return
        if isinstance(result, Prompt):
            session.expect_pdu(result.length)
            session.write("\r\n> ")
            return
        lines += result
    device.answer(session, lines)


def args_of(text: str) -> list[str]:
    """Comma-separated arguments, quotes removed."""
    return [a.strip().strip('"') for a in text.split(",")] if text else []


def int_arg(values: list[str], index: int, default: int | None = None) -> int:
    """An integer argument, or `default`; a bad value fails the command."""
    try:
        return int(values[index])
    except (IndexError, ValueError) as exc:
        if default is not None and (index >= len(values) or values[index] == ""):
            return default
        raise CommandFailed() from exc


def encode_ussd(device: SimDevice, reply: UssdReply) -> str:
    """`<str>` of `+CUSD` for the reply's DCS: UCS-2 hex (72), packed GSM-7 hex or text (15)."""
    if reply.dcs == 72:
        return ucs2.encode(reply.reply).hex().upper()
    if device.state.ussd_hex and gsm7.is_gsm7(reply.reply):
        return gsm7.pack(gsm7.encode(reply.reply)).hex().upper()
    return reply.reply


# -- general (V.250, TS 27.007 §5) --------------------------------------------------------
@handler("E")
async def _echo(device: SimDevice, session: Session, op: str, args: str) -> Result:
    device.state.echo = args != "0"
    return []


@handler("V", "Q", "&F", "&W", "&D", "&C", "S", "X", "L", "M", "+CMMS", "+CNMA")
async def _accept(device: SimDevice, session: Session, op: str, args: str) -> Result:
    return []


@handler("Z")
async def _reset(device: SimDevice, session: Session, op: str, args: str) -> Result:
    device.state.reset_volatile()
    return []


@handler("I")
async def _info(device: SimDevice, session: Session, op: str, args: str) -> Result:
    s = device.state
    return [
        f"Manufacturer: {s.manufacturer}",
        f"Model: {s.model}",
        f"Revision: {s.revision}",
        f"IMEI: {s.imei}",
        "+GCAP: +CGSM,+DS,+ES",
    ]


@handler("+CMEE")
async def _cmee(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "read":
        return [f"+CMEE: {device.state.cmee}"]
    if op == "test":
        return ["+CMEE: (0-2)"]
    device.state.cmee = int_arg(args_of(args), 0, 0)
    return []


def _value(template: str) -> Handler:
    """A read-only value: `template` is formatted with the modem state as `s`."""

    async def fn(device: SimDevice, session: Session, op: str, args: str) -> Result:
        if op == "test":
            return []
        return [template.format(s=device.state)]

    return fn


HANDLERS["+CGMI"] = HANDLERS["+GMI"] = _value("{s.manufacturer}")
HANDLERS["+CGMM"] = HANDLERS["+GMM"] = _value("{s.model}")
HANDLERS["+CGMR"] = HANDLERS["+GMR"] = _value("{s.revision}")
HANDLERS["+CGSN"] = HANDLERS["+GSN"] = _value("{s.imei}")
HANDLERS["+CCID"] = _value("+CCID: {s.iccid}")
HANDLERS["^ICCID"] = _value("^ICCID: {s.iccid}")
HANDLERS["+GCAP"] = _value("+GCAP: +CGSM,+DS,+ES")
HANDLERS["+CNUM"] = _value('+CNUM: "","{s.own_number}",145')


@handler("+CIMI")
async def _cimi(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if not device.state.pin_ok:
        raise cme(11)
    return [device.state.imsi]


@handler("+CPIN")
async def _cpin(device: SimDevice, session: Session, op: str, args: str) -> Result:
    s = device.state
    if op == "read":
        return ["+CPIN: READY" if s.pin_ok else "+CPIN: SIM PIN"]
    if op == "set":
        if args_of(args)[:1] != [s.pin]:
            raise cme(16)  # incorrect password
        s.pin_ok = True
        return []
    return []


@handler("+CFUN")
async def _cfun(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "read":
        return [f"+CFUN: {device.state.cfun}"]
    if op == "test":
        return ["+CFUN: (0,1,4),(0-1)"]
    values = args_of(args)
    device.state.cfun = int_arg(values, 0, 1)
    if int_arg(values, 1, 0) == 1:
        device.reboot()
    return []


@handler("^CURC")
async def _curc(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "read":
        return [f"^CURC: {int(device.state.curc)}"]
    device.state.curc = args.strip() != "0"
    return []


@handler("^PORTSEL")
async def _portsel(device: SimDevice, session: Session, op: str, args: str) -> Result:
    # Huawei: which port carries URCs; Gammu sets it right after connecting.
    if op == "read":
        return ["^PORTSEL: 0"]
    if op == "test":
        return ["^PORTSEL: (0-1)"]
    return []


# -- network (TS 27.007 §7, §8) ------------------------------------------------------------
@handler("+CSQ")
async def _csq(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "test":
        return ["+CSQ: (0-31,99),(0-7,99)"]
    return [f"+CSQ: {device.state.rssi},99"]


def _registration(name: str) -> Handler:
    async def fn(device: SimDevice, session: Session, op: str, args: str) -> Result:
        s = device.state
        if op == "read":
            return [f"{name}: {s.creg_mode},{s.reg_stat if s.cfun == 1 else 0}"]
        if op == "test":
            return [f"{name}: (0-2)"]
        s.creg_mode = int_arg(args_of(args), 0, 0)
        return []

    return fn


HANDLERS["+CREG"] = _registration("+CREG")
HANDLERS["+CGREG"] = _registration("+CGREG")


@handler("+COPS")
async def _cops(device: SimDevice, session: Session, op: str, args: str) -> Result:
    s = device.state
    if op == "test":
        return [f'+COPS: (2,"{s.operator}","{s.operator}","{s.operator_numeric}",2),,(0-4),(0-2)']
    if op == "set":
        values = args_of(args)
        if int_arg(values, 0, 0) == 3:
            s.cops_format = int_arg(values, 1, 0)
        return []
    if s.reg_stat not in (1, 5):
        return ["+COPS: 0"]
    name = s.operator_numeric if s.cops_format == 2 else s.operator
    return [f'+COPS: 0,{s.cops_format},"{name}",2']


@handler("^SYSINFO")
async def _sysinfo(device: SimDevice, session: Session, op: str, args: str) -> Result:
    return ["^SYSINFO: 2,3,0,5,1,,4"]
