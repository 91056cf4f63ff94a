"""E.164 normalisation and sender validation."""

import pytest

from smsgw_shared.sms.errors import InvalidNumberError, InvalidSenderError
from smsgw_shared.sms.phone import is_alphanumeric_sender, normalize_number, validate_sender


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("89203048606", "+79203048606"),
        ("+79203048606", "+79203048606"),
        ("79203048606", "+79203048606"),
        ("+7 (920) 304-86-06", "+79203048606"),
        ("8 920 304 86 06", "+79203048606"),
        ("8-920-304-86-06", "+79203048606"),
        ("0079203048606", "+79203048606"),
        ("004915112345678", "+4915112345678"),
        ("+4915112345678", "+4915112345678"),
        ("4915112345678", "+4915112345678"),
        ("87012345678", "+77012345678"),  # a Kazakh mobile: valid as KZ, not forced to RU
        ("+77012345678", "+77012345678"),
    ],
)
def test_normalize(raw: str, e164: str) -> None:
    assert normalize_number(raw) == e164


def test_other_default_region() -> None:
    assert normalize_number("030 123456", "DE") == "+4930123456"
    with pytest.raises(InvalidNumberError, match="no default region"):
        normalize_number("89203048606", None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("8920abc8606", "letters"),
        ("+7920304860612345", "too long"),
        ("12", "too short"),
        ("123", "not a valid"),
        ("+7 920 304", "not a valid"),
        ("7+9203048606", "unexpected character"),
        ("8920304860\x00", "unexpected character"),
        ("+0 123 456 789", "not a valid"),
    ],
)
def test_invalid(raw: str, reason: str) -> None:
    with pytest.raises(InvalidNumberError, match=reason) as info:
        normalize_number(raw)
    assert info.value.raw == raw
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("raw", "kind", "value", "ton", "npi"),
    [
        ("MyShop", "alphanumeric", "MyShop", 5, 0),
        ("Shop 24", "alphanumeric", "Shop 24", 5, 0),
        ("ABCDEFGHIJK", "alphanumeric", "ABCDEFGHIJK", 5, 0),
        ("+79203048606", "international", "+79203048606", 1, 1),
        ("79203048606", "international", "+79203048606", 1, 1),
        ("123", "short_code", "123", 0, 1),
        ("12345678", "short_code", "12345678", 0, 1),
        ("123456789012", "numeric", "123456789012", 0, 1),
    ],
)
def test_validate_sender(raw: str, kind: str, value: str, ton: int, npi: int) -> None:
    sender = validate_sender(raw)
    assert (sender.kind, sender.value, sender.ton, sender.npi) == (kind, value, ton, npi)
    assert is_alphanumeric_sender(raw) == (kind == "alphanumeric")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " ",
        " Shop",
        "ABCDEFGHIJKL",
        "Shop{}",
        "Магазин",
        "12",
        "1234567890123456",
        "+7920",
        "A\nB",
    ],
)
def test_invalid_sender(raw: str) -> None:
    with pytest.raises(InvalidSenderError):
        validate_sender(raw)
    assert not is_alphanumeric_sender(raw)
