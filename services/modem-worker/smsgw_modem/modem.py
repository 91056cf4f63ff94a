"""What AT commands mean: start-up, identity, network state, SMS storage, sending a PDU.

Commands are from 3GPP TS 27.007 (general, network) and TS 27.005 (SMS, PDU mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field

from smsgw_modem.at.engine import AtEngine
from smsgw_modem.at.errors import AtError, AtTimeout, CommandError, SimPinRequired
from smsgw_shared.config import ModemConfig

log = logging.getLogger(__name__)

_QUOTED = re.compile(r'"([^"]*)"')
# TS 27.007 §7.2: <stat> 1 registered (home), 5 registered (roaming)
REGISTERED = frozenset({1, 5})
REGISTRATION_TEXT = {
    0: "not registered",
    1: "home",
    2: "searching",
    3: "denied",
    4: "unknown",
    5: "roaming",
}


class RegistrationTimeout(AtError):
    """The modem did not register on a network within `registration_timeout`."""

    code_name = "NOT_REGISTERED"


@dataclass
class ModemInfo:
    """Identity and live state of a modem, as reported in heartbeats."""

    manufacturer: str | None = None
    model: str | None = None
    imei: str | None = None
    imsi: str | None = None
    iccid: str | None = None
    smsc: str | None = None
    operator: str | None = None
    registration: str | None = None
    signal_dbm: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message in modem storage (`+CMGL`/`+CMGR`): index, TS 27.005 <stat>, PDU hex."""

    index: int
    stat: int
    pdu: str
    length: int | None = None


def csq_to_dbm(rssi: int) -> int | None:
    """TS 27.007 §8.5: <rssi> 0..31 is -113..-51 dBm in 2 dB steps; 99 is unknown."""
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    return None


def _fields(line: str, prefix: str) -> list[str]:
    body = line[len(prefix) :].strip() if line.startswith(prefix) else line
    return [p.strip().strip('"') for p in body.split(",")]


def parse_stored(lines: list[str], prefix: str, index: int | None = None) -> list[StoredMessage]:
    """Pair `+CMGL: <index>,<stat>,[<alpha>],<length>` / `+CMGR:` headers with their PDU lines."""
    out: list[StoredMessage] = []
    header: list[str] | None = None
    for line in lines:
        if line.startswith(prefix):
            header = _fields(line, prefix)
            continue
        if header is None:
            continue
        try:
            if index is None:
                idx, stat = int(header[0]), int(header[1])
            else:
                idx, stat = index, int(header[0])
            length = int(header[-1]) if header[-1].isdigit() else None
        except (ValueError, IndexError):
            log.warning("unparseable storage header", extra={"header": header})
            header = None
            continue
        out.append(StoredMessage(idx, stat, line.strip(), length))
        header = None
    return out


class Modem:
    """A modem's commands on top of an AT engine."""

    def __init__(
        self, engine: AtEngine, config: ModemConfig, info: ModemInfo | None = None
    ) -> None:
        self.engine = engine
        self.config = config
        self.info = info if info is not None else ModemInfo()

    async def cmd(self, command: str, timeout: float | None = None) -> list[str]:
        """Run one command with the modem's default timeout."""
        return await self.engine.command(command, timeout or self.config.command_timeout)

    async def _first(self, command: str) -> str | None:
        try:
            lines = await self.cmd(command)
        except CommandError:
            return None
        return lines[0].strip() if lines else None

    async def sync(self, attempts: int = 3) -> None:
        """Get the modem's attention: `AT` until it answers OK."""
        last: Exception | None = None
        for _ in range(attempts):
            try:
                await self.engine.command("AT", min(3.0, self.config.command_timeout))
                return
            except (AtTimeout, CommandError) as exc:
                last = exc
        raise AtTimeout(f"modem does not answer AT: {last}")

    async def initialize(self) -> None:
        """Start-up (TS 27.007/27.005): echo off, numeric errors, identity, PIN, PDU mode, CNMI."""
        await self.sync()
        await self.cmd("ATE0")
        await self.cmd("AT+CMEE=1")
        await self.identify()
        await self.unlock_sim()
        await self.cmd("AT+CMGF=0")  # TS 27.005 §3.2.3: PDU mode
        storage = self.config.storage
        try:
            await self.cmd(f'AT+CPMS="{storage}","{storage}","{storage}"')
        except CommandError as exc:
            log.warning("AT+CPMS refused; using the modem's storage", extra={"error": str(exc)})
        await self._set_cnmi()
        for command in self.config.init_commands:
            await self.cmd(command)
        line = await self._first("AT+CSCA?")
        if line:
            found = _QUOTED.search(line)
            self.info.smsc = found.group(1) if found else None
        with contextlib.suppress(CommandError):
            await self.cmd("AT+COPS=3,0")  # TS 27.007 §7.3: report the long alphanumeric name

    async def _set_cnmi(self) -> None:
        # TS 27.005 §3.4.1: mt=1 store and indicate with +CMTI; ds=2 store status reports and
        # indicate them with +CDSI. Stored reports survive a worker restart (the sweep finds
        # them); ds=1 (+CDS routed straight to the TE) loses any report that arrives while
        # nobody listens, so it is only the fallback for modems that refuse ds=2.
        for value in ("2,1,0,2,0", "1,1,0,2,0", "2,1,0,1,0", "1,1,0,1,0"):
            try:
                await self.cmd(f"AT+CNMI={value}")
                return
            except CommandError:
                continue
        log.warning("modem accepts no AT+CNMI setting; relying on the storage sweep")

    async def identify(self) -> None:
        """Manufacturer, model, IMEI, IMSI and ICCID (TS 27.007 §5)."""
        info = self.info
        info.manufacturer = await self._first("AT+CGMI")
        info.model = await self._first("AT+CGMM")
        info.imei = await self._first("AT+CGSN")
        line = await self._first("AT+CCID") or await self._first("AT^ICCID?")
        if line:
            info.iccid = line.split(":", 1)[-1].strip().strip('"')

    async def unlock_sim(self) -> None:
        """`AT+CPIN?`; enter the configured PIN when the SIM asks for it (TS 27.007 §8.3)."""
        line = await self._first("AT+CPIN?") or ""
        if "SIM PIN" in line:
            if not self.config.pin:
                raise SimPinRequired("AT+CPIN?", 11, "SIM PIN required and none configured")
            await self.cmd(f'AT+CPIN="{self.config.pin}"')
            await asyncio.sleep(1.0)  # the SIM needs a moment after the PIN before SMS commands
        imsi = await self._first("AT+CIMI")
        self.info.imsi = imsi

    async def registration(self) -> int | None:
        """`AT+CREG?` <stat> (TS 27.007 §7.2)."""
        for line in await self.cmd("AT+CREG?"):
            if line.startswith("+CREG:"):
                parts = _fields(line, "+CREG:")
                try:
                    stat = int(parts[1] if len(parts) > 1 else parts[0])
                except ValueError:
                    return None
                self.info.registration = REGISTRATION_TEXT.get(stat, str(stat))
                return stat
        return None

    async def wait_registered(self, stop: asyncio.Event) -> None:
        """Poll registration until home or roaming, or `registration_timeout`."""
        deadline = time.monotonic() + self.config.registration_timeout
        while not stop.is_set():
            if await self.registration() in REGISTERED:
                return
            if time.monotonic() > deadline:
                raise RegistrationTimeout(f"not registered: {self.info.registration}")
            await asyncio.sleep(1.0)

    async def refresh_network(self) -> None:
        """Signal (`+CSQ`) and operator (`+COPS?`) for heartbeats."""
        for line in await self.cmd("AT+CSQ"):
            if line.startswith("+CSQ:"):
                try:
                    self.info.signal_dbm = csq_to_dbm(int(_fields(line, "+CSQ:")[0]))
                except ValueError:
                    self.info.signal_dbm = None
        for line in await self.cmd("AT+COPS?"):
            if line.startswith("+COPS:"):
                found = _QUOTED.search(line)
                self.info.operator = found.group(1) if found else None

    async def send_pdu(self, pdu_hex: str, tpdu_length: int) -> int:
        """`AT+CMGS=<length>` + PDU; return the TP-MR from `+CMGS: <mr>` (TS 27.005 §3.5.1)."""
        command = f"AT+CMGS={tpdu_length}"
        lines = await self.engine.command_with_pdu(
            command,
            pdu_hex,
            prompt_timeout=self.config.command_timeout,
            timeout=self.config.send_timeout,
        )
        for line in lines:
            if line.startswith("+CMGS:"):
                try:
                    return int(_fields(line, "+CMGS:")[0])
                except ValueError:
                    break
        raise CommandError(command, f"no +CMGS: <mr> in the answer {lines!r}")

    async def list_messages(self) -> list[StoredMessage]:
        """`AT+CMGL=4`: every stored message in PDU mode (TS 27.005 §3.4.2)."""
        lines = await self.cmd("AT+CMGL=4", max(self.config.command_timeout, 30.0))
        return parse_stored(lines, "+CMGL:")

    async def read_message(self, index: int) -> StoredMessage | None:
        """`AT+CMGR=<index>` (TS 27.005 §3.4.3); None for an empty slot."""
        try:
            lines = await self.cmd(f"AT+CMGR={index}")
        except CommandError as exc:
            log.info("AT+CMGR failed", extra={"index": index, "error": str(exc)})
            return None
        found = parse_stored(lines, "+CMGR:", index)
        return found[0] if found else None

    async def delete_message(self, index: int) -> None:
        """`AT+CMGD=<index>` (TS 27.005 §3.5.4)."""
        await self.cmd(f"AT+CMGD={index}")
