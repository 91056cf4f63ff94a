"""SMSC id normalisation: the same id in its different spellings compares equal."""

from __future__ import annotations

import pytest

from smsgw_smpp.ids import normalise, to_smsc_form


@pytest.mark.parametrize(
    ("raw", "fmt", "written_as", "want"),
    [
        ("00A1F", "hex", "same", "a1f"),
        ("a1f", "hex", "same", "a1f"),
        ("2591", "hex", "decimal", "a1f"),  # decimal receipt id for a hex submit id
        ("0000002591", "hex", "decimal", "a1f"),
        ("A1F", "hex", "hex", "a1f"),
        ("000123", "decimal", "same", "123"),
        ("123", "decimal", "same", "123"),
        ("7B", "decimal", "hex", "123"),  # hex receipt id for a decimal submit id
        ("00Ab-9", "string", "same", "00Ab-9"),
        ("  x1 ", "string", "same", "x1"),
        ("00AbC", "auto", "same", "abc"),
        ("000", "auto", "same", "0"),
        ("0000", "hex", "same", "0"),
        ("not-hex", "hex", "same", "not-hex"),  # never fails: stays comparable
        (b"00A1F\x00", "hex", "same", "a1f"),
        ("", "hex", "same", ""),
    ],
)
def test_normalise(raw: str | bytes, fmt: str, written_as: str, want: str) -> None:
    assert normalise(raw, fmt, written_as) == want  # type: ignore[arg-type]


def test_submit_and_receipt_forms_meet() -> None:
    submit_id = "00002B3C1F"  # hex, upper case, zero padded
    receipt_id = str(int(submit_id, 16))
    assert normalise(submit_id, "hex") == normalise(receipt_id, "hex", "decimal")
    assert to_smsc_form(normalise(submit_id, "hex"), "hex") == "2B3C1F"
