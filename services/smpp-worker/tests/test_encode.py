"""Send job → submit_sm fields: data_coding per bind, addresses, validity, split modes."""

from __future__ import annotations

import pytest

from smsgw_shared.config import SmppBindConfig
from smsgw_shared.messages import SendJob
from smsgw_shared.sms import ConcatRefCounter
from smsgw_smpp import pdu as sp
from smsgw_smpp.encode import address, build_submits, relative_validity
from smsgw_smpp.sim.decode import reassemble
from smsgw_smpp.sim.state import Submitted


def _job(text: str, **kw: object) -> SendJob:
    return SendJob(message_id="m", to="+79160000000", text=text, route="smpp:b1", **kw)


def _build(job: SendJob, **cfg: object) -> list:
    return build_submits(
        job, SmppBindConfig(id="b1", **cfg), ConcatRefCounter(8), ConcatRefCounter(16)
    )


@pytest.mark.parametrize(
    ("seconds", "want"),
    [(3600, "000000010000000R"), (90061, "000001010101000R"), (1, "000000000100000R")],
)
def test_relative_validity(seconds: int, want: str) -> None:
    assert relative_validity(seconds) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("+79160000000", (1, 1, "79160000000")),
        ("MyShop", (5, 0, "MyShop")),
        ("1234", (3, 0, "1234")),
        ("79160000000", (1, 1, "79160000000")),
    ],
)
def test_address(value: str, want: tuple[int, int, str]) -> None:
    assert address(value, 5, 0) == want


@pytest.mark.parametrize(
    ("text", "encoding", "bind_dc", "want_dc"),
    [
        ("plain", "gsm7", 0, 0),
        ("Größe", "gsm7", 3, 3),
        ("€uro", "gsm7", 3, 8),  # not Latin-1: UCS-2 instead of a wrong character
        ("plain", "gsm7", 8, 8),
        ("Привет", "ucs2", 0, 8),
    ],
)
def test_data_coding_per_bind(text: str, encoding: str, bind_dc: int, want_dc: int) -> None:
    (part,) = _build(_job(text, encoding=encoding), data_coding=bind_dc)
    assert part.fields["data_coding"] == want_dc


@pytest.mark.parametrize("split", ["udh", "sar", "payload"])
def test_split_modes_reassemble(split: str) -> None:
    text = "😀 emoji at every boundary 👍🏽 " * 12
    parts = _build(_job(text, encoding="ucs2"), split=split)
    records = [
        Submitted(str(i), sp.decode(sp.encode(sp.SUBMIT_SM, i, p.fields, p.tlvs)), "s", 0.0)
        for i, p in enumerate(parts)
    ]
    (msg,) = reassemble(records)
    assert msg["text"] == text and msg["complete"]
    assert (msg["parts"] == 1) == (split == "payload")
