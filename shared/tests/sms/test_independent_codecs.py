"""The text engine against independent implementations, where `test_pdu.py` (SMS-SUBMIT
building read by smspdudecoder) and the modem simulator's tests (SMS-DELIVER and
STATUS-REPORT read by python-messaging) do not already check it:

- GSM-7 septet packing (TS 23.038 §6.1.2.1) and UCS-2 against smspdudecoder's codecs;
- our SMS-SUBMIT decoder reading PDUs python-messaging built (single, multipart, UCS-2,
  status report request, validity, message class 0);
- our SMS-DELIVER builder (the modem simulator's) read by smspdudecoder, any text.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from messaging.sms import SmsSubmit as MessagingSubmit
from smspdudecoder.codecs import GSM, UCS2
from smspdudecoder.fields import SMSDeliver

from smsgw_shared.sms import gsm7, ucs2
from smsgw_shared.sms.pdu import build_deliver_pdus
from smsgw_shared.sms.pdu_decode import decode_submit
from smsgw_shared.sms.udh import ConcatInfo

BASIC = sorted(gsm7.BASIC_CHARS)
GSM_TEXT = st.text(st.sampled_from(sorted(gsm7.GSM7_CHARS)), max_size=200)
# python-messaging splits an extension character from its ESC at a part boundary (see
# DEPENDENCIES.md): its multipart PDUs are only a reference for basic characters.
BASIC_TEXT = st.text(st.sampled_from(BASIC), min_size=1, max_size=400)
CYRILLIC = st.text(st.sampled_from("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВ 0123.,!"), max_size=200)
ANY_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=400
)


@settings(max_examples=300, deadline=None)
@given(GSM_TEXT)
def test_gsm7_packing_is_smspdudecoders(text: str) -> None:
    packed = gsm7.pack(gsm7.encode(text))
    assert packed.hex().upper() == GSM.encode(text)
    septets = gsm7.septet_count(text)
    assert gsm7.decode(gsm7.unpack(bytes.fromhex(GSM.encode(text)), septets)) == text


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=100))
def test_ucs2_is_smspdudecoders(text: str) -> None:
    assert ucs2.encode(text).hex().upper() == UCS2.encode(text).upper()
    assert ucs2.decode(bytes.fromhex(UCS2.encode(text))) == text


def _messaging(text: str, ref: int, csms: int, **options: object) -> list[str]:
    sms = MessagingSubmit("+79203048606", text)
    sms.ref = ref
    sms.rand_id = csms
    for name, value in options.items():
        setattr(sms, name, value)
    return [p.pdu for p in sms.to_pdu()]


@settings(max_examples=150, deadline=None)
@given(st.one_of(BASIC_TEXT, CYRILLIC.filter(bool)), st.integers(0, 255), st.integers(0, 255))
def test_our_submit_decoder_reads_python_messaging(text: str, ref: int, csms: int) -> None:
    pdus = _messaging(text, ref, csms)
    decoded = [decode_submit(p) for p in pdus]
    assert "".join(d.text or "" for d in decoded) == text
    assert all(d.recipient.number == "+79203048606" for d in decoded)
    if len(pdus) > 1:
        assert [d.concat for d in decoded] == [
            ConcatInfo(csms, len(pdus), i, 8) for i in range(1, len(pdus) + 1)
        ]
    else:
        assert decoded[0].concat is None


def test_submit_options_from_python_messaging() -> None:
    (pdu,) = _messaging(
        "Status please", 77, 0, request_status=True, validity=timedelta(hours=1), klass=0
    )
    d = decode_submit(pdu)
    assert (d.text, d.message_ref, d.status_report_request) == ("Status please", 77, True)
    assert d.validity_seconds == 3600
    assert d.dcs.message_class == 0


@settings(max_examples=150, deadline=None)
@given(ANY_TEXT, st.integers(0, 255), st.sampled_from([8, 16]))
def test_our_deliver_pdus_read_by_smspdudecoder(text: str, ref: int, ref_bits: int) -> None:
    scts = datetime(2026, 3, 1, 12, 34, 29, tzinfo=UTC)
    pdus = build_deliver_pdus(
        text,
        "+79160001234",
        scts=scts,
        concat_ref=ref,
        ref_bits=ref_bits,  # type: ignore[arg-type]
    )
    theirs = [SMSDeliver.decode(io.StringIO(p.hex)) for p in pdus]
    assert "".join(t["user_data"]["data"] for t in theirs) == text
    for i, t in enumerate(theirs, start=1):
        assert t["sender"]["number"] == "79160001234"
        assert t["scts"] == scts
        header = t["user_data"].get("header")
        if len(pdus) == 1:
            assert not header
            continue
        (element,) = header["elements"]
        assert element["iei"] == (0x00 if ref_bits == 8 else 0x08)
        assert element["data"] == {"reference": ref, "parts_count": len(pdus), "part_number": i}
