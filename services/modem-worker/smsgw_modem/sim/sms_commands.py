"""The simulated modem's SMS (TS 27.005), USSD (TS 27.007 §7.15) and SIM-toolkit commands."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from smsgw_modem.sim.commands import (
    HANDLERS,
    CommandFailed,
    Prompt,
    Result,
    args_of,
    cms,
    handler,
    int_arg,
)
from smsgw_shared.sms import gsm7

if TYPE_CHECKING:
    from smsgw_modem.sim.device import SimDevice
    from smsgw_modem.sim.session import Session

_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
_USSD_CODE = re.compile(r"^[0-9*#+]+$")
STAT_TEXT = {"REC UNREAD": 0, "REC READ": 1, "STO UNSENT": 2, "STO SENT": 3, "ALL": 4}


@handler("+CMGF")
async def _cmgf(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "read":
        return [f"+CMGF: {device.state.cmgf}"]
    if op == "test":
        return ["+CMGF: (0-1)"]
    device.state.cmgf = int_arg(args_of(args), 0, 0)
    return []


@handler("+CSCA")
async def _csca(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "read":
        return [f'+CSCA: "{device.state.csca}",145']
    if op == "set":
        device.state.csca = args_of(args)[0]
    return []


@handler("+CSMS")
async def _csms(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "test":
        return ["+CSMS: (0,1)"]
    if op == "read":
        return ["+CSMS: 0,1,1,1"]
    return ["+CSMS: 1,1,1"]


@handler("+CSCS")
async def _cscs(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "read":
        return [f'+CSCS: "{device.state.cscs}"']
    if op == "test":
        return ['+CSCS: ("GSM","IRA","UCS2")']
    device.state.cscs = args_of(args)[0] if args else "GSM"
    return []


@handler("+CPMS")
async def _cpms(device: SimDevice, session: Session, op: str, args: str) -> Result:
    s = device.state
    used, total = len(s.storage), s.storage_size
    if op == "test":
        return ['+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")']
    if op == "read":
        return [f'+CPMS: "SM",{used},{total},"SM",{used},{total},"SM",{used},{total}']
    memories = args_of(args)
    if not memories or any(m not in ("SM", "ME", "MT", "SR") for m in memories):
        raise cms(302)
    return [f"+CPMS: {used},{total},{used},{total},{used},{total}"]


@handler("+CNMI")
async def _cnmi(device: SimDevice, session: Session, op: str, args: str) -> Result:
    s = device.state
    if op == "read":
        return ["+CNMI: " + ",".join(str(v) for v in s.cnmi)]
    if op == "test":
        return ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)"]
    values = args_of(args)
    new = tuple(int_arg(values, i, s.cnmi[i]) for i in range(5))
    if new[0] > 2 or new[1] > 3 or new[3] > 2:
        raise cms(303)
    s.cnmi = new  # type: ignore[assignment]
    return []


@handler("+CMGS")
async def _cmgs(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "test":
        return []
    if device.state.cmgf != 0:
        raise cms(303)  # text-mode sending is not simulated; PDU mode only
    length = int_arg(args_of(args), 0)
    if not 7 <= length <= 176:
        raise cms(304)
    if device.state.reg_stat not in (1, 5):
        raise cms(331)
    return Prompt(length)


def _stored_lines(index: int, stat: int, pdu: str, length: int, prefix: str) -> list[str]:
    head = (
        f"{prefix}: {index},{stat},,{length}"
        if prefix == "+CMGL"
        else f"{prefix}: {stat},,{length}"
    )
    return [head, pdu]


@handler("+CMGL")
async def _cmgl(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "test":
        return ["+CMGL: (0-4)"]
    raw = args_of(args)[0] if args else "0"
    wanted = STAT_TEXT.get(raw.upper()) if not raw.isdigit() else int(raw)
    if wanted is None or wanted > 4:
        raise cms(302)
    lines: list[str] = []
    for index in sorted(device.state.storage):
        item = device.state.storage[index]
        if wanted in (4, item.stat):
            lines += _stored_lines(index, item.stat, item.pdu, item.length, "+CMGL")
            if item.stat == 0:
                item.stat = 1  # listing unread messages marks them read
    return lines


@handler("+CMGR")
async def _cmgr(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "test":
        return []
    index = int_arg(args_of(args), 0)
    item = device.state.storage.get(index)
    if item is None:
        if not 0 <= index < device.state.storage_size:
            raise cms(321)
        return []  # an empty slot answers OK without lines (Huawei)
    lines = _stored_lines(index, item.stat, item.pdu, item.length, "+CMGR")
    if item.stat == 0:
        item.stat = 1
    return lines


@handler("+CMGD")
async def _cmgd(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "test":
        return ["+CMGD: (0-49),(0-4)"]
    values = args_of(args)
    index, flag = int_arg(values, 0), int_arg(values, 1, 0)
    storage = device.state.storage
    if flag == 4:
        storage.clear()
    elif flag in (1, 2, 3):
        # TS 27.005 §3.5.4: 1 read; 2 read and sent; 3 read, sent and unsent
        stats = {1: {1}, 2: {1, 3}, 3: {1, 2, 3}}[flag]
        for i in [i for i, m in storage.items() if m.stat in stats]:
            del storage[i]
    elif not 0 <= index < device.state.storage_size:
        raise cms(321)
    else:
        storage.pop(index, None)
    return []


# -- USSD ----------------------------------------------------------------------------------
def _decode_code(raw: str) -> str:
    """The request as text; Huawei-style clients send it as packed GSM-7 hex."""
    if _USSD_CODE.match(raw) or not _HEX.match(raw):
        return raw
    data = bytes.fromhex(raw)
    try:
        text = gsm7.decode(gsm7.unpack(data, len(data) * 8 // 7)).rstrip("@\r")
    except ValueError:
        return raw
    return text if _USSD_CODE.match(text) else raw


@handler("+CUSD")
async def _cusd(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "read":
        return ["+CUSD: 1"]
    if op == "test":
        return ["+CUSD: (0-2)"]
    values = args_of(args)
    n = int_arg(values, 0, 0)
    if n == 1 and len(values) > 1:
        if device.state.reg_stat not in (1, 5):
            raise CommandFailed("CME", 30)
        device.spawn(device.ussd_answer(_decode_code(values[1])))
    return []


# -- SIM toolkit (3GPP TS 31.111 via the Siemens/Huawei-style AT+STGI/AT+STGR) ------------
@handler("+STGI", "^STGI")
async def _stgi(device: SimDevice, session: Session, op: str, args: str) -> Result:
    if op == "test":
        return ["+STGI: (0-15)"]
    cmd = int_arg(args_of(args), 0, 0)
    if cmd == 0:
        return ['+STGI: "SIM Menu"', '+STGI: 1,2,"Balance",0', '+STGI: 2,2,"Info",0']
    if cmd == 1 and device.state.stk_display is not None:
        return [f'+STGI: 0,"{device.state.stk_display}",0']
    raise CommandFailed("CME", 4)


@handler("+STGR", "^STGR")
async def _stgr(device: SimDevice, session: Session, op: str, args: str) -> Result:
    values = args_of(args)
    cmd, item = int_arg(values, 0, 0), int_arg(values, 2, 0)
    if cmd == 0:
        if item == 1:
            device.state.stk_display = device.state.balance_text
        elif item == 2:
            device.state.stk_display = f"SIM {device.state.iccid}"
        else:
            raise CommandFailed("CME", 4)
        device.spawn(_stin_later(device))
    return []


async def _stin_later(device: SimDevice) -> None:
    await asyncio.sleep(0.05)
    device.urc("+STIN: 1")  # a DISPLAY TEXT is waiting for AT+STGI=1


__all__ = ["HANDLERS"]
