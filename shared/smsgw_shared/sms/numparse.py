"""E.164 from the clean strings `normalize_number` hands over ('+' and ASCII digits, or
ASCII digits read in a default region): phonenumbers' parse, validate and format, without
the general-purpose work.

`phonenumbers.parse` accepts anything a person might type (letters, RFC 3966, extensions,
Unicode digits) and pays for it on every call, with a regex cache lookup per pattern: for
a 1,000-recipient request of new numbers that was most of the time the API spent. This
module takes the same steps in the same order (IDD prefix, country code, the default
region's code without '+', national prefix, lengths, then "is it of any known type" in the
region the number belongs to) on the same metadata, with each region's patterns compiled
once and its type patterns joined into one per length: several times faster (figures:
README). Steps for input it is never given (letters, extensions, Unicode digits) are left
out. What it returns is what phonenumbers returns: `tests/sms/test_numparse.py` checks
that number by number, over random numbers of every country code and numbers varied from
every region's examples, in international, national and IDD forms.

It reads phonenumbers' metadata (`PhoneMetadata` and `PhoneNumberDesc` attributes, the
`COUNTRY_CODE_TO_REGION_CODE` table) and repeats the steps of its private helpers, named
below where each is repeated; it calls none of them. Supported: phonenumbers >=9.0,<10
(`SUPPORTED`, pinned the same in `shared/pyproject.toml`); `tests/sms/test_numparse_guard.py`
fails, saying what changed, when the installed version leaves that range or its helpers,
constants or metadata attributes change.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc
from phonenumbers import phonenumberutil as pnu

SUPPORTED = (">=9.0", "<10")
_LOWEST, _BELOW = (9, 0), (10,)

_MIN_NSN = 2  # phonenumberutil._MIN_LENGTH_FOR_NSN
_MAX_NSN = 17  # phonenumberutil._MAX_LENGTH_FOR_NSN
_MAX_CC = 3  # phonenumberutil._MAX_LENGTH_COUNTRY_CODE
_LENGTH = pnu.ValidationResult
_KEEP_UNSTRIPPED = (_LENGTH.TOO_SHORT, _LENGTH.IS_POSSIBLE_LOCAL_ONLY, _LENGTH.INVALID_LENGTH)
_CAPTURING_DIGIT = re.compile(r"(\d)")  # phonenumberutil._CAPTURING_DIGIT_PATTERN


def version_supported(text: str) -> bool:
    """Whether a phonenumbers version is one this module supports."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", text)[:3])
    return _LOWEST <= numbers < _BELOW


def length_result(nsn: str, metadata: PhoneMetadata) -> int:
    """phonenumberutil._test_number_length(nsn, metadata) (type UNKNOWN: the general
    description's possible lengths): a `ValidationResult`."""
    desc = metadata.general_desc
    if desc is None or not desc.possible_length:
        return _LENGTH.INVALID_LENGTH
    lengths = desc.possible_length
    length = len(nsn)
    if length in (desc.possible_length_local_only or ()):
        return _LENGTH.IS_POSSIBLE_LOCAL_ONLY
    if lengths[0] == length:
        return _LENGTH.IS_POSSIBLE
    if lengths[0] > length:
        return _LENGTH.TOO_SHORT
    if lengths[-1] < length:
        return _LENGTH.TOO_LONG
    return _LENGTH.IS_POSSIBLE if length in lengths[1:] else _LENGTH.INVALID_LENGTH


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


@dataclass(frozen=True, slots=True)
class _Desc:
    """One number description: its possible lengths and pattern."""

    lengths: frozenset[int]
    pattern: re.Pattern[str]

    def matches(self, nsn: str) -> bool:
        """phonenumberutil._is_number_matching_desc."""
        if self.lengths and len(nsn) not in self.lengths:
            return False
        return self.pattern.fullmatch(nsn) is not None


def _desc(desc: PhoneNumberDesc | None) -> _Desc | None:
    """None for a description nothing matches (absent, no pattern, or lengths (-1,))."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = frozenset(desc.possible_length or ())
    if lengths == {-1}:
        return None
    return _Desc(lengths, re.compile(desc.national_number_pattern))


@dataclass(frozen=True, slots=True)
class _Region:
    """One region's (or non-geographic calling code's) metadata, its patterns compiled."""

    metadata: PhoneMetadata
    general_pattern: re.Pattern[str] | None  # without lengths, as parsing matches it
    general: _Desc | None
    # The number types' patterns joined into one alternation per length (a fullmatch of
    # '(?:A)|(?:B)' is a fullmatch of A or of B), and the join of the types with no
    # lengths for any other length.
    types_by_length: dict[int, re.Pattern[str]]
    types_any_length: re.Pattern[str] | None
    leading_digits: re.Pattern[str] | None
    idd: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    transform_rule: str | None

    def general_match(self, number: str) -> bool:
        """phonenumberutil._match_national_number on the general description."""
        pattern = self.general_pattern
        return pattern is not None and pattern.fullmatch(number) is not None

    def valid(self, nsn: str) -> bool:
        """phonenumberutil._number_type_helper(...) != UNKNOWN."""
        if self.general is None or not self.general.matches(nsn):
            return False
        types = self.types_by_length.get(len(nsn), self.types_any_length)
        return types is not None and types.fullmatch(nsn) is not None

    def strip_national_prefix(self, number: str) -> str:
        """phonenumberutil._maybe_strip_national_prefix_carrier_code, the number only."""
        if not number or self.national_prefix is None:
            return number
        match = self.national_prefix.match(number)
        if match is None:
            return number
        groups = match.groups()
        if not self.transform_rule or groups[len(groups) - 1] is None:
            stripped = number[match.end() :]
        else:
            stripped = self.national_prefix.sub(self.transform_rule, number, count=1)
        if self.general_match(number) and not self.general_match(stripped):
            return number
        return stripped

    def strip_idd(self, number: str) -> str | None:
        """phonenumberutil._parse_prefix_as_idd: the number after the international
        prefix, or None when it does not start with one."""
        match = self.idd.match(number) if self.idd is not None else None
        if match is None:
            return None
        digit = _CAPTURING_DIGIT.search(number[match.end() :])
        if digit is not None and digit.group(1) == "0":
            return None
        return number[match.end() :]


def _join(descs: list[_Desc]) -> re.Pattern[str] | None:
    if not descs:
        return None
    return re.compile("|".join(f"(?:{d.pattern.pattern})" for d in descs))


@functools.cache
def _region(code: int, region: str) -> _Region | None:
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None:
        return None
    kinds = [
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
        metadata.fixed_line,
    ]
    if not metadata.same_mobile_and_fixed_line_pattern:
        kinds.append(metadata.mobile)
    types = [d for d in map(_desc, kinds) if d is not None]
    lengths = sorted({n for d in types for n in d.lengths})
    joined = {n: _join([d for d in types if not d.lengths or n in d.lengths]) for n in lengths}
    types_by_length = {n: p for n, p in joined.items() if p is not None}
    general = metadata.general_desc
    return _Region(
        metadata=metadata,
        general_pattern=_compile(general.national_number_pattern if general else None),
        general=_desc(general),
        types_by_length=types_by_length,
        types_any_length=_join([d for d in types if not d.lengths]),
        leading_digits=_compile(metadata.leading_digits),
        idd=_compile(metadata.international_prefix),
        national_prefix=_compile(metadata.national_prefix_for_parsing),
        transform_rule=metadata.national_prefix_transform_rule,
    )


def _default_region(region: str) -> _Region | None:
    metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
    return None if metadata is None else _region(metadata.country_code, metadata.id)


def _country_code(digits: str) -> tuple[int, str]:
    """phonenumberutil._extract_country_code, for ASCII digits: (0, digits) if none."""
    if not digits or digits[0] == "0":
        return 0, digits
    for i in range(1, min(len(digits), _MAX_CC) + 1):
        code = int(digits[:i])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code, digits[i:]
    return 0, digits


def _own_country_code(digits: str, home: _Region) -> str | None:
    """The end of phonenumberutil._maybe_extract_country_code: the national number of a
    number written with the default region's own code but no '+' ('7920…' in RU)."""
    code = str(home.metadata.country_code)
    if not digits.startswith(code):
        return None
    rest = home.strip_national_prefix(digits[len(code) :])
    if (not home.general_match(digits) and home.general_match(rest)) or (
        length_result(digits, home.metadata) == _LENGTH.TOO_LONG
    ):
        return rest
    return None


def _parse(candidate: str, region: str | None) -> tuple[int, str] | None:
    """The country code and national significant number `phonenumbers.parse(candidate,
    region)` finds, or None where it raises."""
    home = own = None
    if candidate.startswith("+"):
        international: str | None = candidate[1:]
    else:
        home = _default_region(region) if region else None
        if home is None:
            return None
        international = home.strip_idd(candidate)
    if international is not None:
        if len(international) <= _MIN_NSN:
            return None
        code, national = _country_code(international)
        if code == 0:
            return None
    else:
        assert home is not None
        own = _own_country_code(candidate, home)
        if home.metadata.country_code is None:
            return None
        code = home.metadata.country_code
        national = candidate if own is None else own
    meta = home
    if international is not None or own is not None:  # a country code was found
        number_region = pnu.region_code_for_country_code(code)
        if home is None or number_region != region:
            meta = _region(code, number_region)
    if meta is None or len(national) < _MIN_NSN:
        return None
    stripped = meta.strip_national_prefix(national)
    if length_result(stripped, meta.metadata) not in _KEEP_UNSTRIPPED:
        national = stripped
    if len(national) > _MAX_NSN:
        return None
    # phonenumbers keeps leading zeros apart (italian_leading_zero) and the rest as an int;
    # the national significant number it formats is these digits again.
    return code, national


def _is_valid(code: int, nsn: str) -> bool:
    """phonenumbers.is_valid_number: of a known type in the region the number is from."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not regions:
        return False
    if len(regions) == 1:
        only = _region(code, regions[0])
        return only is not None and only.valid(nsn)
    for name in regions:  # phonenumberutil._region_code_for_number_from_list
        region = _region(code, name)
        if region is None:
            continue
        if region.leading_digits is not None:
            if region.leading_digits.match(nsn):
                return region.valid(nsn)
        elif region.valid(nsn):
            return True
    return False


def e164(candidate: str, region: str | None) -> str | None:
    """The E.164 form of a valid number, else None: what phonenumbers' parse,
    `is_valid_number` and E.164 formatting give.

    `candidate` is '+' and ASCII digits, or ASCII digits read in `region`, 16 digits at
    most (`normalize_number` has cleaned and bounded it)."""
    parsed = _parse(candidate, region)
    if parsed is None or not _is_valid(*parsed):
        return None
    return f"+{parsed[0]}{parsed[1]}"
