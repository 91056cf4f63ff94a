"""The per-modem send journal survives restarts and compacts."""

from __future__ import annotations

from pathlib import Path

from smsgw_modem.journal import SendJournal
from smsgw_shared.messages import PartRef, StatusEvent


def test_outcome_and_progress_survive_reopen(tmp_path: Path) -> None:
    journal = SendJournal.for_modem(str(tmp_path), "m1")
    journal.record_part("j1", 17, 1, 200)
    journal.record_part("j1", 17, 2, 201)
    event = StatusEvent(
        message_id="x", state="sent", route="modem:m1", parts=[PartRef(index=1, provider_id="200")]
    )
    journal.record_part("j2", None, 1, 5)
    journal.record_outcome("j2", event)
    again = SendJournal.for_modem(str(tmp_path), "m1")
    assert again.progress("j1").parts == {1: 200, 2: 201}
    assert again.progress("j1").concat_ref == 17
    recorded = again.outcome("j2")
    assert recorded is not None and recorded.event_id == event.event_id
    assert again.progress("j2").parts == {}


def test_compaction_keeps_recent_outcomes(tmp_path: Path) -> None:
    journal = SendJournal(tmp_path / "j.journal", keep=10, max_lines=30)
    for i in range(100):
        journal.record_outcome(f"j{i}", StatusEvent(message_id=str(i), state="sent", route="r"))
    assert journal.outcome("j99") is not None
    assert journal.outcome("j0") is None
    assert len((tmp_path / "j.journal").read_text().splitlines()) <= 40


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = SendJournal(path)
    journal.record_outcome("a", StatusEvent(message_id="1", state="sent", route="r"))
    with path.open("a") as fh:
        fh.write('{"k":"outcome","job":"b","ev')
    assert SendJournal(path).outcome("a") is not None
