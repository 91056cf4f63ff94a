"""AT framing and the engine against scripted transcripts (no broker, no simulator)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from smsgw_modem.at.engine import AtEngine, Urc
from smsgw_modem.at.errors import (
    AtTimeout,
    CmeError,
    CmsError,
    CommandError,
    PortClosed,
    SimPinRequired,
)
from smsgw_modem.at.framing import Garbage, Line, LineSplitter, Prompt, response_prefix


def test_splitter_lines_prompt_and_garbage() -> None:
    s = LineSplitter()
    tokens = s.feed(b'\r\nOK\r\n\r\n+CMTI: "SM",3\r\n\r\n> ')
    assert tokens == [Line("OK"), Line('+CMTI: "SM",3'), Prompt()]
    assert s.feed(b"\x00\xff\xfe\x01junk\r\n") == [Garbage(b"\x00\xff\xfe\x01junk")]
    assert s.feed(b"+CSQ: 2") == []  # truncated line waits for its end
    assert s.pending == b"+CSQ: 2"
    assert s.feed(b"0,99\r\n") == [Line("+CSQ: 20,99")]


def test_splitter_drops_reset_partial_and_overlong() -> None:
    s = LineSplitter()
    s.feed(b"+CMGL: 1,0,,2")
    assert s.reset() == b"+CMGL: 1,0,,2"
    tokens = s.feed(b"A" * 5000)
    assert isinstance(tokens[0], Garbage)


def test_splitter_pdu_echo_after_prompt() -> None:
    s = LineSplitter()
    assert s.feed(b"AT+CMGS=20\r\r\n> 0011AABB\x1a\r\n+CMGS: 4\r\n\r\nOK\r\n") == [
        Line("AT+CMGS=20"),
        Prompt(),
        Line("0011AABB"),
        Line("+CMGS: 4"),
        Line("OK"),
    ]


@pytest.mark.parametrize(
    ("command", "prefix"),
    [("AT+CREG?", "+CREG:"), ("AT^ICCID?", "^ICCID:"), ("AT+CMGS=23", "+CMGS:"), ("ATE0", None)],
)
def test_response_prefix(command: str, prefix: str | None) -> None:
    assert response_prefix(command) == prefix


class FakeWriter:
    """A port whose modem answers from a script: written command → bytes to feed."""

    def __init__(self, reader: asyncio.StreamReader, script: Callable[[str], bytes | None]):
        self.reader = reader
        self.script = script
        self.written: list[str] = []
        self.buf = ""

    def write(self, data: bytes) -> None:
        text = data.decode()
        self.written.append(text)
        self.buf += text
        while True:
            cut = min(
                (i for i in (self.buf.find("\r"), self.buf.find("\x1a")) if i >= 0), default=-1
            )
            if cut < 0:
                return
            line, self.buf = self.buf[: cut + 1], self.buf[cut + 1 :]
            answer = self.script(line)
            if answer is not None:
                asyncio.get_running_loop().call_soon(self.reader.feed_data, answer)

    def close(self) -> None:
        self.reader.feed_eof()


def make_engine(script: Callable[[str], bytes | None]) -> tuple[AtEngine, list[Urc], FakeWriter]:
    reader = asyncio.StreamReader()
    writer = FakeWriter(reader, script)
    urcs: list[Urc] = []
    engine = AtEngine(reader, writer, urcs.append, name="t")  # type: ignore[arg-type]
    engine.start()
    return engine, urcs, writer


async def test_urc_interleaved_with_response_and_echo() -> None:
    def script(line: str) -> bytes | None:
        if line == "AT+CSQ\r":
            # echo on, a URC before the answer, a two-line +CDS inside, then the answer
            return (
                b"AT+CSQ\r\r\n^RSSI: 17\r\n\r\n+CDS: 25\r\n0791AABB\r\n"
                b"\r\n+CSQ: 17,99\r\n\r\nOK\r\n"
            )
        return None

    engine, urcs, _ = make_engine(script)
    assert await engine.command("AT+CSQ", 1) == ["+CSQ: 17,99"]
    assert urcs == [Urc("^RSSI: 17"), Urc("+CDS: 25", "0791AABB")]
    await engine.close()


async def test_own_response_prefix_is_not_a_urc() -> None:
    engine, urcs, _ = make_engine(
        lambda line: b"\r\n+CREG: 0,1\r\n\r\nOK\r\n" if line == "AT+CREG?\r" else None
    )
    assert await engine.command("AT+CREG?", 1) == ["+CREG: 0,1"]
    assert urcs == []
    await engine.close()


async def test_prompt_pdu_and_mr() -> None:
    def script(line: str) -> bytes | None:
        if line.startswith("AT+CMGS"):
            return b"\r\n> "
        if line.endswith("\x1a"):
            return b"\r\n+CMGS: 42\r\n\r\nOK\r\n"
        return None

    engine, _, writer = make_engine(script)
    lines = await engine.command_with_pdu("AT+CMGS=12", "0011AA", timeout=1)
    assert lines == ["+CMGS: 42"]
    assert writer.written[-1] == "0011AA\x1a"
    await engine.close()


async def test_prompt_never_comes_sends_esc() -> None:
    engine, _, writer = make_engine(lambda line: None)
    with pytest.raises(AtTimeout):
        await engine.command_with_pdu("AT+CMGS=12", "00", prompt_timeout=0.1, timeout=1)
    assert "\x1b" in writer.written
    assert engine.consecutive_timeouts == 1
    await engine.close()


@pytest.mark.parametrize(
    ("answer", "error", "code", "temporary"),
    [
        (b"\r\n+CMS ERROR: 500\r\n", CmsError, "CMS_500", True),
        (b"\r\n+CMS ERROR: 304\r\n", CmsError, "CMS_304", False),
        (b"\r\n+CME ERROR: 11\r\n", SimPinRequired, "CME_11", True),
        (b"\r\n+CME ERROR: SIM busy\r\n", CmeError, "CME_ERROR", True),
        (b"\r\nERROR\r\n", CommandError, "AT_ERROR", True),
    ],
)
async def test_errors_are_named(answer: bytes, error: type, code: str, temporary: bool) -> None:
    engine, _, _ = make_engine(lambda line: answer)
    with pytest.raises(error) as info:
        await engine.command("AT+CMGS=1", 1)
    assert info.value.error_code == code
    assert info.value.temporary is temporary
    await engine.close()


async def test_garbage_lines_skipped() -> None:
    engine, _, _ = make_engine(
        lambda line: b"\xff\xfe\x00\x01\x02\r\n\r\n+CGMM\r\nE3131\r\n\x80\x81\r\nOK\r\n"
    )
    assert await engine.command("AT+CGMM", 1) == ["+CGMM", "E3131"]
    assert engine.garbage_count == 2
    await engine.close()


async def test_timeout_then_port_closed() -> None:
    engine, _, writer = make_engine(lambda line: None)
    with pytest.raises(AtTimeout):
        await engine.command("AT", 0.05)
    writer.reader.feed_eof()
    await asyncio.wait_for(engine.closed.wait(), 1)
    with pytest.raises(PortClosed):
        await engine.command("AT", 0.05)


async def test_script_exchange_collects_urcs_until_expected() -> None:
    def script(line: str) -> bytes | None:
        if line.startswith("AT+CUSD"):
            return b'\r\nOK\r\n\r\n^RSSI: 3\r\n\r\n+CUSD: 0,"Balance 5",15\r\n'
        return None

    engine, _, _ = make_engine(script)
    lines = await engine.exchange('AT+CUSD=1,"*100#",15', "+CUSD:", 1)
    assert lines[-1] == '+CUSD: 0,"Balance 5",15'
    await engine.close()
