"""stop_tasks: a cancel that a loop swallows does not hang a shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from smsgw_shared.runtime import stop_tasks


async def _swallows_cancels(times: int, ran: list[int], give_up: asyncio.Event) -> None:
    """A loop like the relay's when a cancel is lost inside a library: it carries on."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ran.append(1)
            if len(ran) > times or give_up.is_set():
                raise


async def test_stops_a_loop_that_lost_a_cancel():
    ran: list[int] = []
    task = asyncio.create_task(_swallows_cancels(2, ran, asyncio.Event()), name="relay")
    await asyncio.sleep(0)
    assert await stop_tasks([task, None], every=0.05) is True
    assert task.cancelled() and len(ran) == 3


async def test_gives_up_loudly_on_a_task_that_never_stops(caplog: pytest.LogCaptureFixture):
    ran: list[int] = []
    give_up = asyncio.Event()
    task = asyncio.create_task(_swallows_cancels(10**9, ran, give_up), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR):
        assert await stop_tasks([task], patience=0.3, every=0.05) is False
    assert "did not stop within 0.3s: stubborn" in caplog.text and not task.done()
    assert len(ran) >= 3  # cancelled again and again, not once
    give_up.set()  # the test's own cleanup: now it ends
    assert await stop_tasks([task], patience=1) is True


async def test_reports_a_task_that_had_failed(caplog: pytest.LogCaptureFixture):
    async def boom() -> None:
        raise RuntimeError("bad")

    task = asyncio.create_task(boom(), name="boom")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        assert await stop_tasks([task]) is True
    assert "task boom ended with RuntimeError('bad')" in caplog.text
