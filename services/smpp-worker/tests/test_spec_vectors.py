"""The codec against PDUs written out by hand from the field tables of the SMPP v3.4
specification (Issue 1.2, 12-Oct-1999), octet by octet, not produced by any codec: each
vector decodes to its fields and encodes back to the same octets.

Header (§3.2, §5.1): command_length, command_id (§5.1.2.1), command_status (§5.1.3),
sequence_number (§5.1.4), 4 octets each, big-endian. C-Octet Strings end with NUL (§3.1);
TLVs are tag (2), length (2), value (§5.3).
"""

from __future__ import annotations

import pytest

from smsgw_smpp import pdu as sp


def _hex(text: str) -> bytes:
    """Octets written as hex, with spaces, newlines and `# comments` ignored."""
    return bytes.fromhex(" ".join(line.split("#")[0] for line in text.splitlines()))


# (name, octets, command_id, status, seq, fields, tlvs)
VECTORS = [
    (
        "bind_transmitter §4.1.1",
        """
        00 00 00 2F  00 00 00 02  00 00 00 00  00 00 00 01   # length 47, bind_transmitter, seq 1
        53 4D 50 50 33 54 45 53 54 00                        # system_id "SMPP3TEST"
        73 65 63 72 65 74 30 38 00                           # password "secret08"
        53 55 42 4D 49 54 31 00                              # system_type "SUBMIT1"
        34 01 01                                             # interface_version 0x34, ton 1, npi 1
        00                                                   # address_range ""
        """,
        sp.BIND_TRANSMITTER,
        0,
        1,
        {
            "system_id": b"SMPP3TEST",
            "password": b"secret08",
            "system_type": b"SUBMIT1",
            "interface_version": 0x34,
            "addr_ton": 1,
            "addr_npi": 1,
            "address_range": b"",
        },
        {},
    ),
    (
        "bind_receiver §4.1.3",
        """
        00 00 00 22  00 00 00 01  00 00 00 00  00 00 00 02   # length 34, bind_receiver
        73 6D 73 67 77 00  73 65 63 72 65 74 00  00          # "smsgw", "secret", ""
        34 00 00 00                                          # 0x34, ton 0, npi 0, range ""
        """,
        sp.BIND_RECEIVER,
        0,
        2,
        {
            "system_id": b"smsgw",
            "password": b"secret",
            "system_type": b"",
            "interface_version": 0x34,
            "addr_ton": 0,
            "addr_npi": 0,
            "address_range": b"",
        },
        {},
    ),
    (
        "bind_transceiver §4.1.5",
        """
        00 00 00 22  00 00 00 09  00 00 00 00  00 00 00 03   # length 34
        73 6D 73 67 77 00  73 65 63 72 65 74 00  00
        34 00 00 00
        """,
        sp.BIND_TRANSCEIVER,
        0,
        3,
        {
            "system_id": b"smsgw",
            "password": b"secret",
            "system_type": b"",
            "interface_version": 0x34,
            "addr_ton": 0,
            "addr_npi": 0,
            "address_range": b"",
        },
        {},
    ),
    (
        "bind_transceiver_resp §4.1.6 with sc_interface_version §5.3.2.25",
        """
        00 00 00 1A  80 00 00 09  00 00 00 00  00 00 00 03   # length 26
        53 4D 53 43 00                                       # system_id "SMSC"
        02 10  00 01  34                                     # TLV 0x0210, length 1, 0x34
        """,
        sp.BIND_TRANSCEIVER | sp.RESP,
        0,
        3,
        {"system_id": b"SMSC"},
        {sp.TLV_SC_INTERFACE_VERSION: b"\x34"},
    ),
    (
        "bind_transmitter_resp §4.1.2, error ESME_RINVPASWD (0x0E): no body (§4.1.2 note)",
        """
        00 00 00 10  80 00 00 02  00 00 00 0E  00 00 00 01
        """,
        sp.BIND_TRANSMITTER | sp.RESP,
        0x0E,
        1,
        {},
        {},
    ),
    (
        "bind_receiver_resp §4.1.4",
        """
        00 00 00 15  80 00 00 01  00 00 00 00  00 00 00 02
        53 4D 53 43 00
        """,
        sp.BIND_RECEIVER | sp.RESP,
        0,
        2,
        {"system_id": b"SMSC"},
        {},
    ),
    (
        "submit_sm §4.4.1, GSM-7 text, receipt requested (§5.2.17)",
        """
        00 00 00 3B  00 00 00 04  00 00 00 00  00 00 00 05   # length 59, submit_sm, seq 5
        00                                                   # service_type ""
        05 00  53 68 6F 70 00                                # source: ton 5 (alnum), npi 0, "Shop"
        01 01  37 39 31 36 30 30 30 31 32 33 34 00           # dest: ton 1, npi 1, "79160001234"
        00 00 00                                             # esm_class, protocol_id, priority
        00 00                                                # schedule_delivery, validity: ""
        01 00 00 00                                          # registered_delivery 1, replace 0,
                                                             # data_coding 0, sm_default_msg_id 0
        0B  48 65 6C 6C 6F 20 77 6F 72 6C 64                 # sm_length 11, "Hello world"
        """,
        sp.SUBMIT_SM,
        0,
        5,
        {
            "service_type": b"",
            "source_addr_ton": 5,
            "source_addr_npi": 0,
            "source_addr": b"Shop",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": b"79160001234",
            "esm_class": 0,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": b"",
            "validity_period": b"",
            "registered_delivery": 1,
            "replace_if_present_flag": 0,
            "data_coding": 0,
            "sm_default_msg_id": 0,
            "short_message": b"Hello world",
        },
        {},
    ),
    (
        "submit_sm §4.4.1, part 1 of 2 with a UDH (esm_class UDHI 0x40, §5.2.12), UCS-2",
        """
        00 00 00 46  00 00 00 04  00 00 00 00  00 00 00 06   # length 70
        00  00 00 00  01 01 37 39 31 36 30 30 30 31 32 33 34 00
        40 00 00                                             # esm_class 0x40 (UDHI)
        00                                                   # schedule_delivery_time ""
        30 30 30 30 30 31 30 30 30 30 30 30 30 30 30 52 00   # validity "000001000000000R"
                                                             # (relative, 1 day, §7.1.1.2)
        01 00 08 00                                          # data_coding 8 (UCS-2)
        0A  05 00 03 2A 02 01  04 1F 04 40                   # UDH: concat ref 42, 2 parts,
                                                             # part 1; "Пр" in UCS-2
        """,
        sp.SUBMIT_SM,
        0,
        6,
        {
            "service_type": b"",
            "source_addr_ton": 0,
            "source_addr_npi": 0,
            "source_addr": b"",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": b"79160001234",
            "esm_class": 0x40,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": b"",
            "validity_period": b"000001000000000R",
            "registered_delivery": 1,
            "replace_if_present_flag": 0,
            "data_coding": 8,
            "sm_default_msg_id": 0,
            "short_message": bytes.fromhex("0500032A0201041F0440"),
        },
        {},
    ),
    (
        "submit_sm §4.4.1 with SAR TLVs sar_msg_ref_num §5.3.2.22, sar_total_segments "
        "§5.3.2.23, sar_segment_seqnum §5.3.2.24",
        """
        00 00 00 3E  00 00 00 04  00 00 00 00  00 00 00 07   # length 62
        00  00 00 00  01 01 37 39 31 36 30 30 30 31 32 33 34 00
        00 00 00  00 00  00 00 00 00                         # esm 0, pid, prio, times, flags, dc 0
        02  68 69                                            # sm_length 2, "hi"
        02 0C  00 02  01 2C                                  # sar_msg_ref_num = 300
        02 0E  00 01  03                                     # sar_total_segments = 3
        02 0F  00 01  02                                     # sar_segment_seqnum = 2
        """,
        sp.SUBMIT_SM,
        0,
        7,
        {
            "service_type": b"",
            "source_addr_ton": 0,
            "source_addr_npi": 0,
            "source_addr": b"",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": b"79160001234",
            "esm_class": 0,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": b"",
            "validity_period": b"",
            "registered_delivery": 0,
            "replace_if_present_flag": 0,
            "data_coding": 0,
            "sm_default_msg_id": 0,
            "short_message": b"hi",
        },
        {
            sp.TLV_SAR_MSG_REF_NUM: b"\x01\x2c",
            sp.TLV_SAR_TOTAL_SEGMENTS: b"\x03",
            sp.TLV_SAR_SEGMENT_SEQNUM: b"\x02",
        },
    ),
    (
        "submit_sm §4.4.1 with message_payload §5.3.2.32 (sm_length 0)",
        """
        00 00 00 35  00 00 00 04  00 00 00 00  00 00 00 08   # length 53
        00  00 00 00  01 01 37 39 31 36 30 30 30 31 32 33 34 00
        00 00 00  00 00  00 00 00 00
        00                                                   # sm_length 0, no short_message
        04 24  00 05  6C 6F 6E 67 21                         # message_payload "long!"
        """,
        sp.SUBMIT_SM,
        0,
        8,
        {
            "service_type": b"",
            "source_addr_ton": 0,
            "source_addr_npi": 0,
            "source_addr": b"",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": b"79160001234",
            "esm_class": 0,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": b"",
            "validity_period": b"",
            "registered_delivery": 0,
            "replace_if_present_flag": 0,
            "data_coding": 0,
            "sm_default_msg_id": 0,
            "short_message": b"",
        },
        {sp.TLV_MESSAGE_PAYLOAD: b"long!"},
    ),
    (
        "submit_sm_resp §4.4.2",
        """
        00 00 00 19  80 00 00 04  00 00 00 00  00 00 00 05   # length 25
        61 62 63 31 32 33 34 35 00                           # message_id "abc12345"
        """,
        sp.SUBMIT_SM | sp.RESP,
        0,
        5,
        {"message_id": b"abc12345"},
        {},
    ),
    (
        "submit_sm_resp §4.4.2, error ESME_RTHROTTLED (0x58): no message_id",
        """
        00 00 00 10  80 00 00 04  00 00 00 58  00 00 00 05
        """,
        sp.SUBMIT_SM | sp.RESP,
        0x58,
        5,
        {},
        {},
    ),
    (
        "deliver_sm §4.6.1, a delivery receipt (esm_class 0x04 §5.2.12, text per Appendix B, "
        "receipted_message_id §5.3.2.12, message_state §5.3.2.35)",
        """
        00 00 00 AB  00 00 00 05  00 00 00 00  00 00 00 09   # length 171
        00                                                   # service_type ""
        01 01  37 39 31 36 30 30 30 31 32 33 34 00           # source: the handset
        05 00  53 68 6F 70 00                                # destination: the original sender
        04 00 00  00 00  00 00 00 00                         # esm_class 0x04: SMSC receipt
        69                                                   # sm_length 105
        69 64 3A 61 62 63 31 32 33 34 35 20                  # "id:abc12345 "
        73 75 62 3A 30 30 31 20                              # "sub:001 "
        64 6C 76 72 64 3A 30 30 31 20                        # "dlvrd:001 "
        73 75 62 6D 69 74 20 64 61 74 65 3A                  # "submit date:"
        32 36 30 33 30 31 31 32 33 34 20                     # "2603011234 "
        64 6F 6E 65 20 64 61 74 65 3A                        # "done date:"
        32 36 30 33 30 31 31 32 33 34 20                     # "2603011234 "
        73 74 61 74 3A 44 45 4C 49 56 52 44 20               # "stat:DELIVRD "
        65 72 72 3A 30 30 30 20                              # "err:000 "
        74 65 78 74 3A 48 65 6C 6C 6F                        # "text:Hello"
        00 1E  00 09  61 62 63 31 32 33 34 35 00             # receipted_message_id "abc12345"
        04 27  00 01  02                                     # message_state 2 (DELIVERED)
        """,
        sp.DELIVER_SM,
        0,
        9,
        {
            "service_type": b"",
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "source_addr": b"79160001234",
            "dest_addr_ton": 5,
            "dest_addr_npi": 0,
            "destination_addr": b"Shop",
            "esm_class": 0x04,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": b"",
            "validity_period": b"",
            "registered_delivery": 0,
            "replace_if_present_flag": 0,
            "data_coding": 0,
            "sm_default_msg_id": 0,
            "short_message": (
                b"id:abc12345 sub:001 dlvrd:001 submit date:2603011234 "
                b"done date:2603011234 stat:DELIVRD err:000 text:Hello"
            ),
        },
        {sp.TLV_RECEIPTED_MESSAGE_ID: b"abc12345\x00", sp.TLV_MESSAGE_STATE: b"\x02"},
    ),
    (
        "deliver_sm_resp §4.6.2 (message_id unused: NUL)",
        """
        00 00 00 11  80 00 00 05  00 00 00 00  00 00 00 09   # length 17
        00
        """,
        sp.DELIVER_SM | sp.RESP,
        0,
        9,
        {"message_id": b""},
        {},
    ),
    (
        "enquire_link §4.11.1",
        "00 00 00 10  00 00 00 15  00 00 00 00  00 00 00 0A",
        sp.ENQUIRE_LINK,
        0,
        10,
        {},
        {},
    ),
    (
        "enquire_link_resp §4.11.2",
        "00 00 00 10  80 00 00 15  00 00 00 00  00 00 00 0A",
        sp.ENQUIRE_LINK | sp.RESP,
        0,
        10,
        {},
        {},
    ),
    (
        "unbind §4.2.1",
        "00 00 00 10  00 00 00 06  00 00 00 00  00 00 00 0B",
        sp.UNBIND,
        0,
        11,
        {},
        {},
    ),
    (
        "unbind_resp §4.2.2",
        "00 00 00 10  80 00 00 06  00 00 00 00  00 00 00 0B",
        sp.UNBIND | sp.RESP,
        0,
        11,
        {},
        {},
    ),
    (
        "generic_nack §4.3.1, ESME_RINVCMDID (0x03)",
        "00 00 00 10  80 00 00 00  00 00 00 03  00 00 00 0C",
        sp.GENERIC_NACK,
        3,
        12,
        {},
        {},
    ),
]


@pytest.mark.parametrize(
    ("octets", "command_id", "status", "seq", "fields", "tlvs"),
    [v[1:] for v in VECTORS],
    ids=[v[0].split(" ")[0] + "-" + str(i) for i, v in enumerate(VECTORS)],
)
def test_spec_vector(
    octets: str, command_id: int, status: int, seq: int, fields: dict, tlvs: dict
) -> None:
    data = _hex(octets)
    assert int.from_bytes(data[:4], "big") == len(data)  # the vector's own command_length
    pdu = sp.decode(data)
    assert (pdu.command_id, pdu.status, pdu.seq) == (command_id, status, seq)
    assert pdu.fields == fields
    assert pdu.tlvs == tlvs
    assert sp.encode(command_id, seq, fields, tlvs, status) == data
    assert sp.encode_pdu(pdu) == data


@pytest.mark.parametrize(
    ("command_id", "name"),
    [
        (sp.GENERIC_NACK, "generic_nack"),  # 0x80000000 (§5.1.2.1): not '0x80000000'
        (sp.BIND_TRANSCEIVER, "bind_transceiver"),
        (sp.BIND_TRANSCEIVER | sp.RESP, "bind_transceiver_resp"),
        (sp.SUBMIT_SM | sp.RESP, "submit_sm_resp"),
        (sp.DELIVER_SM, "deliver_sm"),
        (sp.ENQUIRE_LINK | sp.RESP, "enquire_link_resp"),
        (sp.UNBIND, "unbind"),
    ],
)
def test_names(command_id: int, name: str) -> None:
    assert sp.Pdu(command_id, 1).name == name
