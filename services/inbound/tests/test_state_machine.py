"""The message state machine, table-driven (pure: no store, no broker)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw_inbound.state_machine import Message, Report, aggregate, apply, next_part_state

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(s: int) -> datetime:
    return T0 + timedelta(seconds=s)


def sent(n: int = 1, t: int = 1, ids: str = "p") -> Report:
    return Report("sent", at(t), "smpp:b1", parts=tuple((i, f"{ids}{i}") for i in range(1, n + 1)))


def dlr(state: str, part: int = 1, t: int = 10, code: str | None = None) -> Report:
    return Report(state, at(t), "smpp:b1", part=part, error_code=code)


def msg_level(state: str, t: int = 1, parts: tuple[tuple[int, str | None], ...] = ()) -> Report:
    return Report(
        state, at(t), "modem:m1", parts=parts, error_code="E" if state != "sending" else None
    )


def run(reports: list[Report], status: str = "queued", parts: int = 1) -> Message:
    m = Message(status=status, parts_count=parts)
    for r in reports:
        apply(m, r)
    return m


@pytest.mark.parametrize(
    ("start", "reports", "expected"),
    [
        ("queued", [msg_level("sending")], "sending"),
        ("queued", [msg_level("sending"), sent()], "sent"),
        ("queued", [sent(), dlr("delivered")], "delivered"),
        ("queued", [sent(), dlr("undelivered")], "undelivered"),
        ("queued", [sent(), dlr("expired")], "expired"),
        ("queued", [sent(), dlr("rejected")], "rejected"),
        ("queued", [msg_level("failed")], "failed"),
        ("sending", [msg_level("failed")], "failed"),
        ("queued", [msg_level("rejected")], "rejected"),
        ("queued", [sent(), dlr("enroute")], "sent"),
        ("queued", [sent(), dlr("accepted")], "sent"),
        ("queued", [sent(), dlr("enroute"), dlr("delivered", t=20)], "delivered"),
        # reordering: the report before `sent`, a late `sending`
        ("queued", [dlr("delivered"), sent()], "delivered"),
        ("queued", [sent(), dlr("delivered"), msg_level("sending")], "delivered"),
        ("queued", [sent(), dlr("delivered"), sent(t=2)], "delivered"),
        # final states do not regress; delivered wins over the others
        ("queued", [sent(), dlr("delivered"), dlr("undelivered")], "delivered"),
        ("queued", [sent(), dlr("undelivered"), dlr("delivered")], "delivered"),
        ("queued", [sent(), dlr("undelivered"), dlr("expired")], "undelivered"),
        ("queued", [sent(), dlr("delivered"), dlr("enroute")], "delivered"),
        # scheduled messages move on when a worker reports
        ("scheduled", [msg_level("sending")], "sending"),
        # canceled: stays on sending/failed, the SMS going out anyway wins
        ("canceled", [msg_level("sending")], "canceled"),
        ("canceled", [msg_level("failed")], "canceled"),
        ("canceled", [sent()], "sent"),
        ("canceled", [sent(), dlr("delivered")], "delivered"),
        # our own expiry: of a queued message, and overtaken by a real report
        ("queued", [msg_level("expired")], "expired"),
        ("queued", [sent(), msg_level("expired"), dlr("delivered", t=30)], "delivered"),
    ],
)
def test_single_part_transitions(start: str, reports: list[Report], expected: str) -> None:
    assert run(reports, start).status == expected


@pytest.mark.parametrize(
    ("parts", "reports", "expected"),
    [
        (3, [sent(3)], "sent"),
        (3, [sent(3), dlr("delivered", 1)], "sent"),
        (3, [sent(3), dlr("delivered", 1), dlr("delivered", 2)], "sent"),
        (3, [sent(3), dlr("delivered", 1), dlr("delivered", 2), dlr("delivered", 3)], "delivered"),
        (
            3,
            [sent(3), dlr("delivered", 1), dlr("delivered", 2), dlr("undelivered", 3)],
            "partially_delivered",
        ),
        (
            3,
            [sent(3), dlr("delivered", 1), dlr("expired", 2), dlr("undelivered", 3)],
            "partially_delivered",
        ),
        (
            3,
            [sent(3), dlr("undelivered", 1), dlr("undelivered", 2), dlr("undelivered", 3)],
            "undelivered",
        ),
        (3, [sent(3), dlr("expired", 1), dlr("undelivered", 2), dlr("expired", 3)], "undelivered"),
        (3, [sent(3), dlr("expired", 1), dlr("expired", 2), dlr("expired", 3)], "expired"),
        # a long message failed after its first part was accepted…
        (2, [msg_level("failed", parts=((1, "9"),))], "failed"),
        # …whose first part is then delivered
        (2, [msg_level("failed", parts=((1, "9"),)), dlr("delivered", 1)], "partially_delivered"),
        # expiry with one part delivered
        (3, [sent(3), dlr("delivered", 1), msg_level("expired", t=100)], "partially_delivered"),
    ],
)
def test_multipart_aggregation(parts: int, reports: list[Report], expected: str) -> None:
    assert run(reports, parts=parts).status == expected


def test_failed_with_submitted_part_keeps_its_provider_id() -> None:
    m = run([msg_level("failed", parts=((1, "9"),))], parts=2)
    assert m.parts[1].status == "sent" and m.parts[1].provider_id == "9"
    assert m.parts[2].status == "failed"
    assert m.status == "failed" and m.error_code == "E"


def test_late_sent_fills_in_provider_ids_and_route() -> None:
    m = run([dlr("delivered", 1), Report("sent", at(1), "smpp:b7", parts=((1, "abc"),))])
    assert m.status == "delivered"
    assert m.parts[1].provider_id == "abc" and m.parts[1].route == "smpp:b7"


def test_retried_send_replaces_provider_ids_only_when_newer() -> None:
    m = run([sent(1, t=1, ids="old"), sent(1, t=5, ids="new")])
    assert m.parts[1].provider_id == "new1"
    m = run([sent(1, t=5, ids="new"), sent(1, t=1, ids="old")])
    assert m.parts[1].provider_id == "new1"


def test_duplicate_report_changes_nothing() -> None:
    m = run([sent(), dlr("delivered")])
    out = apply(m, dlr("delivered"))
    assert not out.status_changed and not out.changed_parts


def test_sent_and_done_times() -> None:
    m = run([msg_level("sending", t=1), sent(t=2), dlr("delivered", t=9)])
    assert m.sent_at == at(2) and m.done_at == at(9)


def test_error_cleared_on_delivery() -> None:
    m = run([sent(), dlr("undelivered", code="X"), dlr("delivered", t=20)])
    assert m.status == "delivered" and m.error_code is None


@pytest.mark.parametrize(
    ("current", "reported", "new"),
    [
        (None, "sending", "sending"),
        (None, "enroute", "sent"),
        ("sending", "sent", "sent"),
        ("sent", "sending", None),
        ("sent", "sent", None),
        ("delivered", "sent", None),
        ("undelivered", "delivered", "delivered"),
        ("expired", "undelivered", None),
        ("failed", "delivered", "delivered"),
    ],
)
def test_next_part_state(current: str | None, reported: str, new: str | None) -> None:
    assert next_part_state(current, reported) == new


def test_aggregate_unknown_until_reported() -> None:
    assert aggregate(Message(status="queued", parts_count=2)) is None


@given(st.permutations([0, 1, 2, 3, 4]))
def test_any_order_of_a_delivered_two_part_message(order: list[int]) -> None:
    reports = [
        sent(2),
        dlr("enroute", 1),
        dlr("delivered", 1, t=11),
        dlr("delivered", 2),
        dlr("delivered", 2),
    ]
    m = run([reports[i] for i in order], parts=2)
    assert m.status == "delivered"
    assert {p.provider_id for p in m.parts.values()} == {"p1", "p2"}


def test_every_order_of_a_partial_delivery_is_partial() -> None:
    reports = [sent(2), dlr("delivered", 1), dlr("undelivered", 2)]
    for order in itertools.permutations(reports):
        assert run(list(order), parts=2).status == "partially_delivered"
