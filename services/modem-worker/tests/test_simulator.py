"""The modem simulator as any AT client sees it: raw TCP, the pty, and the control API."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from messaging.sms import SmsDeliver

from smsgw_modem.sim import Simulator
from smsgw_modem.sim.commands import split_line
from smsgw_shared.sms import build_submit_pdus, decode_submit


class Client:
    """A dumb line client, the way a terminal program talks to a modem."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, text: str, until: bytes = b"OK\r\n", timeout: float = 3.0) -> str:
        self.writer.write(text.encode())
        data = b""
        while not data.endswith(until) and b"ERROR" not in data:
            data += await asyncio.wait_for(self.reader.read(4096), timeout)
        return data.decode()


async def connect(sim: Simulator, n: int = 1) -> Client:
    server = sim.servers[n - 1]
    return Client(*await asyncio.open_connection(server.host, server.port))


def test_split_command_line() -> None:
    assert split_line("ATE0+CMEE=1;+CREG?") == [
        ("E", "set", "0"),
        ("+CMEE", "set", "1"),
        ("+CREG", "read", ""),
    ]
    assert split_line('AT+CUSD=1,"*100#;x",15') == [("+CUSD", "set", '1,"*100#;x",15')]
    assert split_line("AT") == []
    assert split_line("hello") is None


async def test_echo_errors_and_identity(sim: Simulator) -> None:
    c = await connect(sim)
    assert await c.send("AT\r") == "AT\r\r\nOK\r\n"  # echo on by default
    assert await c.send("ATE0\r") == "ATE0\r\r\nOK\r\n"
    assert await c.send("AT+CGMM\r") == "\r\nE3131\r\n\r\nOK\r\n"
    assert await c.send("AT+BOGUS\r") == "\r\nERROR\r\n"
    await c.send("AT+CMEE=1\r")
    assert "+CME ERROR: 16" in await c.send('AT+CPIN="0000"\r', b"\r\n")
    assert "+CMS ERROR: 321" in await c.send("AT+CMGD=99\r", b"\r\n")
    assert '+CSCA: "+79000000010",145' in await c.send("AT+CSCA?\r")
    assert "+CREG: 0,1" in await c.send("AT+CREG?\r")
    assert '+COPS: 0,0,"SimNet",2' in await c.send("AT+COPS?\r")
    c.writer.close()


async def test_cmgs_prompt_submit_and_cancel(sim: Simulator) -> None:
    c = await connect(sim)
    await c.send("ATE0\r")
    pdu = build_submit_pdus("hi there", "+4915112345678", status_report=True)[0]
    assert (await c.send(f"AT+CMGS={pdu.tpdu_length}\r", b"> ")).endswith("\r\n> ")
    answer = await c.send(pdu.hex + "\x1a")
    assert "+CMGS: " in answer
    record = sim.device(1).state.sent[-1]
    assert (record.recipient, record.text, record.srr) == ("+4915112345678", "hi there", True)
    assert decode_submit(record.pdu).text == "hi there"
    await c.send(f"AT+CMGS={pdu.tpdu_length}\r", b"> ")
    assert await c.send("00\x1b") == "\r\nOK\r\n"  # ESC: nothing sent
    assert len(sim.device(1).state.sent) == 1
    await c.send(f"AT+CMGS={pdu.tpdu_length + 1}\r", b"> ")
    assert "+CMS ERROR: 304" in await c.send(pdu.hex + "\x1a", b"\r\n")  # wrong length
    c.writer.close()


async def test_injected_sms_listed_and_cross_checked(sim: Simulator) -> None:
    c = await connect(sim)
    await c.send("ATE0\r")
    await c.send("AT+CNMI=2,1,0,1,0\r")
    text = "Тест длинного сообщения. " * 4
    sim.device(1).inject("+79161234567", text)
    urcs = await c.send("", b'+CMTI: "SM",1\r\n')
    assert '+CMTI: "SM",0' in urcs
    listing = await c.send("AT+CMGL=4\r")
    lines = [line for line in listing.split("\r\n") if line]
    assert lines[0].startswith("+CMGL: 0,0,,") and lines[-1] == "OK"
    # python-messaging, an independent decoder, reads the simulator's SMS-DELIVER PDUs
    decoded = [SmsDeliver(lines[1]), SmsDeliver(lines[3])]
    assert decoded[0].number == "+79161234567"
    assert "".join(d.text for d in decoded) == text
    assert decoded[0].udh.concat.cnt == 2
    assert "+CMGR: 1,," in await c.send("AT+CMGR=0\r")  # read now
    await c.send("AT+CMGD=0\r")
    await c.send("AT+CMGD=0,4\r")
    assert not sim.device(1).state.storage
    c.writer.close()


async def test_pty_speaks_at(sim: Simulator) -> None:
    link = sim.servers[0].pty_link
    assert link is not None and link.exists()
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, b"ATI\r")
        data = b""
        for _ in range(100):
            await asyncio.sleep(0.02)
            try:
                data += os.read(fd, 4096)
            except BlockingIOError:
                continue
            if data.endswith(b"OK\r\n"):
                break
        assert b"Model: E3131" in data
    finally:
        os.close(fd)


async def test_control_api(sim: Simulator) -> None:
    base = f"http://127.0.0.1:{sim.control_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/modems") as r:
            modems = await r.json()
        assert [m["n"] for m in modems] == [1, 2]
        assert modems[0]["url"].startswith("socket://127.0.0.1:") and modems[0]["pty"]
        async with http.post(f"{base}/modems/1/inject", json={"from": "+7916", "text": "x"}) as r:
            assert r.status == 201 and (await r.json())["indices"] == [0]
        async with http.get(f"{base}/modems/1/storage") as r:
            assert len(await r.json()) == 1
        async with http.post(
            f"{base}/modems/1/faults", json={"cms_error": 500, "count": 2, "latency": 0.1}
        ) as r:
            assert (await r.json())["cms_count"] == 2
        async with http.post(f"{base}/modems/1/reports", json={"outcome": "expired"}) as r:
            assert (await r.json())["outcome"] == "expired"
        async with http.post(f"{base}/modems/1/reports", json={"outcome": "bogus"}) as r:
            assert r.status == 400
        async with http.post(f"{base}/modems/1/ussd", json={"reply": "ok", "dcs": 72}) as r:
            assert r.status == 200
        async with http.post(f"{base}/modems/1/network", json={"rssi": 5}) as r:
            assert (await r.json())["rssi"] == 5
        async with http.delete(f"{base}/modems/1/faults") as r:
            assert (await r.json())["cms_count"] == 0
        async with http.get(f"{base}/modems/1/sent") as r:
            assert await r.json() == []
        async with http.get(f"{base}/modems/9/sent") as r:
            assert r.status == 404


@pytest.mark.parametrize("outcome", ["delivered", "undelivered"])
async def test_status_report_urc_decodes_with_python_messaging(
    sim: Simulator, outcome: str
) -> None:
    sim.device(1).state.reports.outcome = outcome
    sim.device(1).state.reports.delay = 0.05
    c = await connect(sim)
    await c.send("ATE0;+CNMI=2,1,0,1,0\r")
    pdu = build_submit_pdus("report", "+79160001234", status_report=True)[0]
    await c.send(f"AT+CMGS={pdu.tpdu_length}\r", b"> ")
    mr = int((await c.send(pdu.hex + "\x1a")).split("+CMGS: ")[1].split("\r")[0])
    urc = await c.send("", b"\r\n", timeout=3)
    while urc.count("\r\n") < 3:
        urc += await c.send("", b"\r\n")
    report = SmsDeliver(urc.split("\r\n")[2])
    assert report.data["ref"] == mr
    assert report.data["sr"]["status"] == (0 if outcome == "delivered" else 0x41)
    assert report.data["sr"]["recipient"] == "+79160001234"
    c.writer.close()
