"""Concatenation UDH (TS 23.040 §9.2.3.24.1, §9.2.3.24.8) and the reference counter."""

import threading

import pytest

from smsgw_shared.sms.errors import PduError, UdhError
from smsgw_shared.sms.udh import (
    ConcatInfo,
    ConcatRefCounter,
    InformationElement,
    UserDataHeader,
    build_concat_udh,
    parse_udh,
)


def test_build_8bit() -> None:
    assert build_concat_udh(0x42, 3, 2).hex() == "050003420302"


def test_build_16bit() -> None:
    assert build_concat_udh(0x1234, 3, 1, 16).hex() == "06080412340301"


@pytest.mark.parametrize(
    ("udh", "concat"),
    [
        ("050003420302", ConcatInfo(0x42, 3, 2, 8)),
        ("06080412340301", ConcatInfo(0x1234, 3, 1, 16)),
        ("0B0504000B00000003FF0201", ConcatInfo(0xFF, 2, 1, 8)),  # port IE first
        ("050003420300", None),  # seq 0: ignored per §9.2.3.24.1
        ("050003420004", None),  # total 0
        ("050003420203", None),  # seq above total
        ("00", None),
    ],
)
def test_parse(udh: str, concat: ConcatInfo | None) -> None:
    header, rest = parse_udh(bytes.fromhex(udh) + b"text")
    assert rest == b"text"
    assert header.concat == concat
    assert header.to_bytes() == bytes.fromhex(udh)
    assert header.length == len(bytes.fromhex(udh))


@pytest.mark.parametrize(
    "udh",
    [
        "",  # no UDHL
        "05000342",  # UDHL beyond the data
        "0100",  # element without its length octet
        "03000542",  # element length overruns the header
        "0400024203",  # concat element with length 2
        "06000442030201",  # concat element with length 4
        "050804123401",  # 16-bit concat element with length 3 (UDHL 5)
    ],
)
def test_parse_corrupt(udh: str) -> None:
    with pytest.raises(UdhError):
        parse_udh(bytes.fromhex(udh))
    assert issubclass(UdhError, PduError)


@pytest.mark.parametrize(
    ("ref", "total", "seq", "bits"),
    [
        (256, 2, 1, 8),
        (-1, 2, 1, 8),
        (65536, 2, 1, 16),
        (1, 0, 1, 8),
        (1, 256, 1, 8),
        (1, 2, 3, 8),
        (1, 2, 0, 8),
        (1, 2, 1, 12),
    ],
)
def test_build_bad(ref: int, total: int, seq: int, bits: int) -> None:
    with pytest.raises(UdhError):
        build_concat_udh(ref, total, seq, bits)  # type: ignore[arg-type]


def test_header_too_long() -> None:
    with pytest.raises(UdhError):
        UserDataHeader((InformationElement(0x70, bytes(200)),)).to_bytes()


def test_counter_wraps() -> None:
    counter = ConcatRefCounter(8, start=254)
    assert [counter.next() for _ in range(4)] == [254, 255, 0, 1]
    counter16 = ConcatRefCounter(16, start=65535)
    assert [counter16.next() for _ in range(2)] == [65535, 0]
    assert 0 <= ConcatRefCounter().next() <= 255
    with pytest.raises(UdhError):
        ConcatRefCounter(12)  # type: ignore[arg-type]


def test_counter_thread_safe() -> None:
    counter = ConcatRefCounter(16, start=0)
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [counter.next() for _ in range(2000)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(16000))
