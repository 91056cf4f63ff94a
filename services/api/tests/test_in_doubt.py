"""The bookkeeping of publishes in doubt (the broker-backed behaviour is in test_no_loss)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from smsgw_api.services import in_doubt as in_doubt_module
from smsgw_api.services.in_doubt import HOLD_S, IN_DOUBT, InDoubt
from smsgw_shared.amqp import Outgoing, Publisher, PublishError
from smsgw_shared.store.repos.messages import MessageRepository


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


class _Repo:
    """What `InDoubt` writes to the store."""

    def __init__(self) -> None:
        self.held: list[tuple[list[int], float]] = []
        self.settled: list[tuple[list[int], list[tuple[int, str]]]] = []

    async def release_outbox(self, ids: Sequence[int], error: str, after: float = 0.0) -> None:
        assert error == IN_DOUBT
        self.held.append((list(ids), after))

    async def settle_outbox(self, done: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        self.settled.append((list(done), list(failed)))


def _items(n: int) -> list[Outgoing]:
    return [Outgoing("x", "k", b"{}") for _ in range(n)]


def _make() -> tuple[_Publisher, _Repo, InDoubt, Publisher]:
    fake, repo = _Publisher(), _Repo()
    return fake, repo, InDoubt(cast(MessageRepository, repo)), cast(Any, fake)


async def _settled(doubts: InDoubt) -> None:
    for _ in range(100):
        if not len(doubts):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not settled")


async def test_an_answer_in_time_is_returned_and_nothing_is_held() -> None:
    fake, repo, doubts, publisher = _make()
    fake.answers.put_nowait([None, PublishError("nack")])
    errors = await doubts.publish(publisher, [1, 2], _items(2), timeout=5)
    assert errors[0] is None and str(errors[1]) == "nack"
    assert len(doubts) == 0 and repo.held == [] and repo.settled == []
    # The broker is given long to answer, not the caller's timeout.
    assert fake.timeouts == [in_doubt_module.ANSWER_WAIT_S]


async def test_a_late_answer_settles_each_row_in_the_store() -> None:
    fake, repo, doubts, publisher = _make()
    errors = await doubts.publish(publisher, [1, 2, 3], _items(3), timeout=0.01)
    assert [str(e) for e in errors] == [IN_DOUBT] * 3
    assert repo.held == [([1, 2, 3], HOLD_S)] and len(doubts) == 1
    fake.answers.put_nowait([None, PublishError("channel closed"), None])
    await _settled(doubts)
    assert repo.settled == [([1, 3], [(2, "channel closed")])]


async def test_the_caller_may_hold_the_rows_itself() -> None:
    fake, repo, doubts, publisher = _make()
    await doubts.publish(publisher, [4], _items(1), timeout=0.01, hold=False)
    assert repo.held == []
    fake.answers.put_nowait([None])
    await _settled(doubts)
    assert repo.settled == [([4], [])]


async def test_a_publish_that_raises_late_fails_its_rows() -> None:
    fake, repo, doubts, publisher = _make()
    await doubts.publish(publisher, [7, 8], _items(2), timeout=0.01)
    fake.answers.put_nowait(ConnectionResetError("gone"))
    await _settled(doubts)
    ((done, failed),) = repo.settled
    assert done == [] and [oid for oid, _ in failed] == [7, 8]
    assert all("gone" in err for _, err in failed)


async def test_at_shutdown_rows_in_doubt_keep_their_hold() -> None:
    _fake, repo, doubts, publisher = _make()
    await doubts.publish(publisher, [9], _items(1), timeout=0.01)
    await doubts.aclose()
    assert len(doubts) == 0
    assert repo.held == [([9], HOLD_S)] and repo.settled == []  # neither done nor released
