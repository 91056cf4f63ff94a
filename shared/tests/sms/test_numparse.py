"""The lean E.164 path gives what phonenumbers gives, number by number.

phonenumbers itself is the oracle: parse, `is_valid_number`, format as E.164. The numbers
are random (every country code, any digits) and varied from each region's example numbers
(so most are valid), in international, national, own-country-code-without-'+' and IDD
forms, read in several default regions. SMSGW_NUMPARSE_FUZZ=300000 (and another
SMSGW_NUMPARSE_SEED) runs a longer check.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from smsgw_shared.sms.numparse import e164

N = int(os.environ.get("SMSGW_NUMPARSE_FUZZ", "6000"))
SEED = int(os.environ.get("SMSGW_NUMPARSE_SEED", "20261204"))
HOMES = ["RU", "KZ", "US", "GB", "DE", "IT", "BR", "AR", "MX", "CN", "IN", "FR", "AU", "UZ"]
TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]


def oracle(candidate: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def random_numbers(rng: random.Random) -> Iterator[tuple[str, str | None]]:
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    while True:
        cc = str(rng.choice(codes))
        yield "+" + cc + digits(rng, rng.randint(1, 15 - len(cc))), None
        yield "+" + digits(rng, rng.randint(1, 15)), None
        home = rng.choice(HOMES)
        prefix = rng.choice(["", "0", "00", "8", "810", "011", "1", "7", cc])
        yield (prefix + digits(rng, rng.randint(3, 16)))[:16], home


def example_numbers(rng: random.Random) -> Iterator[tuple[str, str | None]]:
    examples: list[tuple[str, phonenumbers.PhoneNumber]] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                examples.append((region, example))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            examples.append(("001", example))
    while True:
        region, example = rng.choice(examples)
        nsn = phonenumbers.national_significant_number(example)
        k = rng.randint(0, min(4, len(nsn)))
        nsn = nsn[: len(nsn) - k] + digits(rng, k)
        if rng.random() < 0.1:
            nsn += digits(rng, 1)
        elif rng.random() < 0.1:
            nsn = nsn[:-1]
        cc = str(example.country_code)
        other = rng.choice(HOMES)
        yield "+" + cc + nsn, None
        yield "00" + cc + nsn, other
        yield cc + nsn, other
        yield "810" + cc + nsn, "RU"
        yield "011" + cc + nsn, "US"
        if region != "001":
            metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
            assert metadata is not None
            yield nsn, region
            yield (metadata.national_prefix or "") + nsn, region
            yield cc + nsn, region


@pytest.mark.parametrize("source", [random_numbers, example_numbers])
def test_same_answer_as_phonenumbers(source):
    rng = random.Random(SEED)
    checked = valid = 0
    mismatches: list[tuple[str, str | None, str | None, str | None]] = []
    for candidate, region in source(rng):
        if checked >= N:
            break
        if not 3 <= len(candidate.lstrip("+")) <= 16:
            continue
        checked += 1
        want = oracle(candidate, region)
        valid += want is not None
        got = e164(candidate, region)
        if got != want:
            mismatches.append((candidate, region, want, got))
    assert mismatches[:10] == []
    assert valid > (checked // 2 if source is example_numbers else 50)


@pytest.mark.parametrize(
    ("candidate", "region"),
    [
        ("89203048606", "RU"),  # national prefix 8
        ("79203048606", "RU"),  # own country code without '+'
        ("9203048606", "RU"),
        ("8107 9203048606", "RU"),  # IDD 810 (spaces are the caller's to strip)
        ("87012345678", "KZ"),  # +7 in Kazakhstan: KZ metadata, not RU
        ("+77012345678", None),
        ("+390612345678", None),  # Italy keeps the leading zero
        ("+4402079460000", None),  # a trunk 0 after the country code
        ("+80012345678", None),  # non-geographic (international freephone)
        ("+12025550123", None),
        # Found by mutating the code until the random checks above missed it:
        ("3201209", "BM"),  # a national transform rule (BM's '441$1'), in BM's metadata
        ("712345", "JE"),  # Jersey numbers with GB's +44, read in JE's metadata
        ("0008001234756", "IN"),  # an IDD followed by 0 is no IDD
        ("01700123171", "IL"),
        ("009940123123151", "AZ"),  # 00, then +994
        ("0", "RU"),
        ("+999123456", None),  # no such country code
    ],
)
def test_known_forms(candidate, region):
    candidate = candidate.replace(" ", "")
    assert e164(candidate, region) == oracle(candidate, region)
