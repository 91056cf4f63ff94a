"""Which binds share receipts: one SMSC account, bound more than once."""

from __future__ import annotations

from smsgw_shared.config import Settings
from smsgw_shared.report_scope import ReportScopes, account_of


def settings(*binds: dict[str, object]) -> Settings:
    return Settings.model_validate({"smpp": {"binds": list(binds)}})


def test_binds_to_the_same_account_share_one_scope_named_alike_in_any_order() -> None:
    s = ReportScopes.from_settings(
        settings(
            {"id": "b2", "host": "smsc", "port": 2775, "system_id": "shop"},
            {"id": "b1", "host": "smsc", "port": 2775, "system_id": "shop"},
            {"id": "b3", "host": "smsc", "port": 2775, "system_id": "other"},
        )
    )
    # Named by the first bind by name, whatever the configuration's order.
    assert s.scope("smpp:b1") == s.scope("smpp:b2") == "smpp:b1"
    assert s.members("smpp:b1") == ("smpp:b1", "smpp:b2")
    # Another system_id on the same SMSC is another account: its receipts stay apart.
    assert s.scope("smpp:b3") == "smpp:b3"
    assert s.members("smpp:b3") == ("smpp:b3",)


def test_a_named_account_groups_binds_across_smsc_nodes() -> None:
    s = ReportScopes.from_settings(
        settings(
            {"id": "a", "host": "node1", "system_id": "shop", "account": "acme"},
            {"id": "b", "host": "node2", "system_id": "shop", "account": "acme"},
            {"id": "c", "host": "node1", "system_id": "shop"},
        )
    )
    assert s.scope("smpp:b") == "smpp:a"
    # Same host and system_id as `a`, but `a` named its account: `c` is on its own.
    assert s.scope("smpp:c") == "smpp:c"
    binds = settings({"id": "x", "host": "smsc", "port": 2776, "system_id": "shop"}).smpp.binds
    assert account_of(binds[0]).startswith("shop@smsc:2776#")


def test_binds_writing_provider_ids_differently_are_not_one_account() -> None:
    s = ReportScopes.from_settings(
        settings(
            {"id": "a", "host": "smsc", "system_id": "shop", "id_format": "hex"},
            {"id": "b", "host": "smsc", "system_id": "shop", "id_format": "decimal"},
        )
    )
    assert s.scope("smpp:b") == "smpp:b"


def test_other_routes_are_their_own_scope_and_keys_expand_to_the_stored_pairs() -> None:
    s = ReportScopes([["smpp:b1", "smpp:b2"]])
    assert s.scope("modem:m1") == "modem:m1"
    assert s.scope("smpp:unknown") == "smpp:unknown"
    assert s.key("smpp:b2", "X1") == ("smpp:b1", "X1")
    assert s.expand([("smpp:b1", "X1"), ("modem:m1", "7")]) == [
        ("modem:m1", "7"),
        ("smpp:b1", "X1"),
        ("smpp:b2", "X1"),
    ]
    # No configuration: nothing shares.
    assert ReportScopes().expand([("smpp:b1", "X")]) == [("smpp:b1", "X")]
