"""The per-modem send journal survives restarts, compacts, and syncs off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path

import pytest

from smsgw_modem.journal import SendJournal
from smsgw_shared.messages import PartRef, StatusEvent


async def test_outcome_and_progress_survive_reopen(tmp_path: Path) -> None:
    journal = SendJournal.for_modem(str(tmp_path), "m1")
    await journal.record_part("j1", 17, 1, 200)
    await journal.record_part("j1", 17, 2, 201)
    event = StatusEvent(
        message_id="x", state="sent", route="modem:m1", parts=[PartRef(index=1, provider_id="200")]
    )
    await journal.record_part("j2", None, 1, 5)
    await journal.record_outcome("j2", event)
    again = SendJournal.for_modem(str(tmp_path), "m1")
    assert again.progress("j1").parts == {1: 200, 2: 201}
    assert again.progress("j1").concat_ref == 17
    recorded = again.outcome("j2")
    assert recorded is not None and recorded.event_id == event.event_id
    assert again.progress("j2").parts == {}


async def test_compaction_keeps_recent_outcomes(tmp_path: Path) -> None:
    journal = SendJournal(tmp_path / "j.journal", keep=10, max_lines=30)
    for i in range(100):
        await journal.record_outcome(
            f"j{i}", StatusEvent(message_id=str(i), state="sent", route="r")
        )
    assert journal.outcome("j99") is not None
    assert journal.outcome("j0") is None
    assert len((tmp_path / "j.journal").read_text().splitlines()) <= 40


async def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = SendJournal(path)
    await journal.record_outcome("a", StatusEvent(message_id="1", state="sent", route="r"))
    with path.open("a") as fh:
        fh.write('{"k":"outcome","job":"b","ev')
    assert SendJournal(path).outcome("a") is not None


async def test_fsync_runs_off_the_event_loop_and_the_record_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a slow disk syncs, other tasks keep running, and `record_outcome` returns only
    after its fsync. The fake fsync is released by a task on the loop: were the fsync run
    on the loop, that task could not run and the fsync would time out instead."""
    journal = SendJournal(tmp_path / "j.journal")
    syncing = threading.Event()
    release = threading.Event()
    released_by_the_loop: list[bool] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        syncing.set()
        released_by_the_loop.append(release.wait(timeout=10))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    event = StatusEvent(message_id="1", state="sent", route="modem:m1")
    record = asyncio.create_task(journal.record_outcome("a", event))
    ticks = 0
    while not syncing.is_set():  # the loop ticks while the writer thread starts syncing
        ticks += 1
        await asyncio.sleep(0)
        assert ticks < 1_000_000
    for _ in range(100):  # and keeps ticking while the fsync is in progress
        await asyncio.sleep(0)
    assert not record.done()  # the caller is still waiting for its fsync
    release.set()
    await asyncio.wait_for(record, 10)
    assert released_by_the_loop == [True]
    assert journal.outcome("a") is not None
    journal.close()
    monkeypatch.undo()
    assert SendJournal(tmp_path / "j.journal").outcome("a") is not None


async def test_a_cancelled_caller_still_gets_its_record_written(tmp_path: Path) -> None:
    journal = SendJournal(tmp_path / "j.journal")
    event = StatusEvent(message_id="1", state="sent", route="modem:m1")
    record = asyncio.create_task(journal.record_outcome("a", event))
    await asyncio.sleep(0)
    record.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await record
    journal.close()  # waits for the queued write
    assert SendJournal(tmp_path / "j.journal").outcome("a") is not None
