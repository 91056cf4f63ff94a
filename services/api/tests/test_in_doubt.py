"""The bookkeeping of publishes in doubt (the broker-backed behaviour is in test_no_loss)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest

from smsgw_api.services import in_doubt as in_doubt_module
from smsgw_api.services.in_doubt import IN_DOUBT, InDoubt
from smsgw_shared.amqp import Outgoing, Publisher, PublishError


class _Publisher:
    """Answers each `publish_many` when the test says so (or raises what it is told to)."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[list[PublishError | None] | BaseException] = asyncio.Queue()
        self.timeouts: list[float | None] = []

    async def publish_many(
        self, items: Sequence[Outgoing], timeout: float | None = None
    ) -> list[PublishError | None]:
        self.timeouts.append(timeout)
        answer = await self.answers.get()
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _items(n: int) -> list[Outgoing]:
    return [Outgoing("x", "k", b"{}") for _ in range(n)]


def _publisher(fake: _Publisher) -> Publisher:
    return cast(Any, fake)


async def test_an_answer_in_time_is_returned_and_nothing_is_in_doubt() -> None:
    fake, doubts = _Publisher(), InDoubt()
    fake.answers.put_nowait([None, PublishError("nack")])
    errors = await doubts.publish(_publisher(fake), [1, 2], _items(2), timeout=5)
    assert errors[0] is None and str(errors[1]) == "nack"
    assert len(doubts) == 0 and doubts.outcome(1) is None
    # The broker is given long to answer, not the caller's timeout.
    assert fake.timeouts == [in_doubt_module.ANSWER_WAIT_S]


async def test_a_late_answer_says_per_row_what_became_of_it_once() -> None:
    fake, doubts = _Publisher(), InDoubt()
    errors = await doubts.publish(_publisher(fake), [1, 2], _items(2), timeout=0.01)
    assert [str(e) for e in errors] == [IN_DOUBT, IN_DOUBT]
    assert doubts.outcome(1) == (False, None) and doubts.outcome(2) == (False, None)
    fake.answers.put_nowait([None, PublishError("channel closed")])
    await asyncio.sleep(0.01)
    assert doubts.outcome(1) == (True, None)  # confirmed after its timeout
    assert doubts.outcome(2) == (True, "channel closed")
    assert doubts.outcome(1) is None and len(doubts) == 0  # told once, then forgotten


async def test_a_publish_that_raises_late_is_a_failure_not_a_lost_answer() -> None:
    fake, doubts = _Publisher(), InDoubt()
    await doubts.publish(_publisher(fake), [7], _items(1), timeout=0.01)
    fake.answers.put_nowait(ConnectionResetError("gone"))
    await asyncio.sleep(0.01)
    answered, error = doubts.outcome(7) or (None, None)
    assert answered is True and error is not None and "gone" in error


async def test_answered_doubts_nobody_asks_about_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(in_doubt_module, "KEEP_S", 0.0)
    fake, doubts = _Publisher(), InDoubt()
    await doubts.publish(_publisher(fake), [1], _items(1), timeout=0.01)
    fake.answers.put_nowait([None])
    await asyncio.sleep(0.01)
    await doubts.publish(_publisher(fake), [2], _items(1), timeout=0.01)  # forgets row 1
    assert doubts.outcome(1) is None
    assert doubts.outcome(2) == (False, None)  # unanswered ones are kept however old
    fake.answers.put_nowait([None])
    await asyncio.sleep(0.01)
