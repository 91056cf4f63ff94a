"""`sms/numparse.py` repeats phonenumbers' private parsing helpers on its metadata: the
installed phonenumbers must be one it supports, and the helpers, constants and metadata
attributes it repeats or reads must still be what it expects. (`test_numparse.py` checks
its results against phonenumbers number by number.)"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import PhoneMetadata
from phonenumbers import phonenumberutil as pnu

from smsgw_shared.sms import numparse

SHARED = Path(__file__).resolve().parents[2]
# numparse's copy → the phonenumbers private it mirrors
CONSTANTS = {
    "_MIN_NSN": "_MIN_LENGTH_FOR_NSN",
    "_MAX_NSN": "_MAX_LENGTH_FOR_NSN",
    "_MAX_CC": "_MAX_LENGTH_COUNTRY_CODE",
}
METADATA = (
    "general_desc",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
    "same_mobile_and_fixed_line_pattern",
    "leading_digits",
    "international_prefix",
    "national_prefix_for_parsing",
    "national_prefix_transform_rule",
    "country_code",
    "id",
)
DESC = ("national_number_pattern", "possible_length", "possible_length_local_only")
# Private helpers whose steps numparse repeats, and a line each still has.
HELPERS = {
    "_test_number_length": "desc_for_type = _number_desc_by_type(metadata, numtype)",
    "_maybe_strip_national_prefix_carrier_code": "national_prefix_for_parsing",
    "_parse_prefix_as_idd": "_CAPTURING_DIGIT_PATTERN",
    "_extract_country_code": "_MAX_LENGTH_COUNTRY_CODE",
    "_is_number_matching_desc": "possible_length",
    "_number_type_helper": "same_mobile_and_fixed_line_pattern",
}


def test_installed_phonenumbers_is_supported() -> None:
    installed = version("phonenumbers")
    assert numparse.version_supported(installed), (
        f"phonenumbers {installed} is installed; smsgw_shared/sms/numparse.py supports "
        f"{','.join(numparse.SUPPORTED)}: run tests/sms/test_numparse.py, compare the helpers "
        "it names with phonenumberutil.py, then widen SUPPORTED and shared/pyproject.toml"
    )


def test_the_declared_range_is_the_supported_range() -> None:
    deps = tomllib.loads((SHARED / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if re.match(r"phonenumbers\b", d)]
    assert pins == ["phonenumbers" + ",".join(numparse.SUPPORTED)]


@pytest.mark.parametrize(("ours", "theirs"), CONSTANTS.items())
def test_constants_are_phonenumbers_own(ours: str, theirs: str) -> None:
    assert hasattr(pnu, theirs), f"phonenumberutil.{theirs} is gone: review numparse.{ours}"
    assert getattr(numparse, ours) == getattr(pnu, theirs), f"phonenumberutil.{theirs} changed"


@pytest.mark.parametrize(("helper", "line"), HELPERS.items())
def test_repeated_helpers_are_unchanged(helper: str, line: str) -> None:
    func = getattr(pnu, helper, None)
    assert func is not None, f"phonenumberutil.{helper} is gone: review numparse"
    assert line in inspect.getsource(func), f"phonenumberutil.{helper} changed: review numparse"


def test_metadata_attributes_read_exist() -> None:
    meta = PhoneMetadata.metadata_for_region("RU", None)
    assert meta is not None
    missing = [a for a in METADATA if not hasattr(meta, a)]
    missing += [f"general_desc.{a}" for a in DESC if not hasattr(meta.general_desc, a)]
    assert not missing, f"PhoneMetadata no longer has {missing}: review numparse"
    assert 7 in phonenumbers.COUNTRY_CODE_TO_REGION_CODE


def test_length_result_is_phonenumbers_own() -> None:
    """numparse.length_result against the private helper it repeats, for every region and
    non-geographic code, at every length from 1 to 18 digits."""
    checked = 0
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            meta = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
            if meta is None:
                continue
            for length in range(1, 19):
                nsn = "5" * length
                assert numparse.length_result(nsn, meta) == pnu._test_number_length(nsn, meta), (
                    region,
                    length,
                )
                checked += 1
    assert checked > 200 * 18
