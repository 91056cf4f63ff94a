"""A per-modem send journal: which parts of a job went out, and the outcome published.

A job redelivered after a crash must not be sent again: before the outcome is published it
is written here, and a redelivery re-publishes it instead of sending. Parts are recorded as
soon as the modem accepts them, so a retry of a half-sent multipart message resumes with
the same concatenation reference instead of sending the first parts twice.

Append-only JSON lines, fsynced; compacted on open and when it grows past `max_lines`.
Writes and fsyncs run on one writer thread, in the order they were recorded, so the event
loop keeps serving other modems and the broker while the disk syncs; `record_*` returns once
its line is fsynced, and a record whose caller is cancelled meanwhile is still written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from smsgw_shared.messages import StatusEvent

log = logging.getLogger(__name__)


@dataclass
class JobProgress:
    """Parts of one job the modem accepted: concat reference and TP-MR per part index."""

    concat_ref: int | None = None
    parts: dict[int, int] = field(default_factory=dict)


class JsonLinesLog:
    """Append-only JSON lines, fsynced on one writer thread in call order; compacted to
    `_snapshot()` on open and when the file grows past `max_lines`. Subclasses keep the
    state: `_apply` a record, `_snapshot` the records that rebuild it."""

    def __init__(self, path: Path, max_lines: int = 20000) -> None:
        self.path = path
        self.max_lines = max_lines
        self._lines = 0
        self._fh: TextIO | None = None  # used only by the writer thread after __init__
        self._writer: ThreadPoolExecutor | None = None

    def _open(self) -> None:
        """Load the file and compact it (before any writer thread exists)."""
        self._load()
        records = self._snapshot()
        self._rewrite(records)
        self._lines = len(records)

    def _apply(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def _snapshot(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as fh:
            for raw in fh:
                try:
                    self._apply(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    log.warning("journal: skipping a torn line", extra={"path": str(self.path)})

    async def _append(self, record: dict[str, Any]) -> None:
        """Apply `record` now; return once its line is on disk (fsynced)."""
        self._apply(record)
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"journal-{self.path.stem}")
        # Queued synchronously, in call order, on the one writer thread; compaction writes
        # the state as of this moment, queued behind the lines before it.
        jobs = [self._writer.submit(self._write_line, line)]
        self._lines += 1
        if self._lines > self.max_lines:
            records = self._snapshot()
            self._lines = len(records)
            jobs.append(self._writer.submit(self._rewrite, records))
        for job in jobs:
            # Shielded: a cancelled caller must not unqueue a record it already applied.
            await asyncio.shield(asyncio.wrap_future(job))

    def _write_line(self, line: str) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the file with `records` (atomically: a temporary file, fsynced, renamed)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def close(self) -> None:
        """Wait for queued writes, then close the file (appends reopen it)."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class SendJournal(JsonLinesLog):
    """job_id → progress and outcome, persisted in `<state_dir>/modem-<id>.journal`."""

    def __init__(self, path: Path, keep: int = 5000, max_lines: int = 20000) -> None:
        super().__init__(path, max_lines)
        self.keep = keep
        self._outcomes: OrderedDict[str, str] = OrderedDict()
        self._progress: dict[str, JobProgress] = {}
        self._open()

    @classmethod
    def for_modem(cls, state_dir: str, modem_id: str) -> SendJournal:
        """The journal file of one modem."""
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / f"modem-{modem_id}.journal")

    def _apply(self, record: dict[str, Any]) -> None:
        job = record["job"]
        if record["k"] == "part":
            progress = self._progress.setdefault(job, JobProgress())
            progress.concat_ref = record.get("ref")
            progress.parts[int(record["i"])] = int(record["mr"])
        elif record["k"] == "outcome":
            self._outcomes[job] = record["event"]
            self._outcomes.move_to_end(job)
            self._progress.pop(job, None)
            while len(self._outcomes) > self.keep:
                self._outcomes.popitem(last=False)

    def _snapshot(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for job, progress in self._progress.items():
            for index, mr in progress.parts.items():
                records.append(
                    {"k": "part", "job": job, "ref": progress.concat_ref, "i": index, "mr": mr}
                )
        for job, event in self._outcomes.items():
            records.append({"k": "outcome", "job": job, "event": event})
        return records

    def outcome(self, job_id: str) -> StatusEvent | None:
        """The outcome already recorded for this job, if any."""
        raw = self._outcomes.get(job_id)
        return StatusEvent.from_bytes(raw) if raw is not None else None

    def progress(self, job_id: str) -> JobProgress:
        """Parts of this job already accepted by the modem."""
        return self._progress.get(job_id, JobProgress())

    async def record_part(self, job_id: str, concat_ref: int | None, index: int, mr: int) -> None:
        """Remember that part `index` was accepted with TP-MR `mr` (returns once fsynced)."""
        await self._append({"k": "part", "job": job_id, "ref": concat_ref, "i": index, "mr": mr})

    async def record_outcome(self, job_id: str, event: StatusEvent) -> None:
        """Remember the outcome event, before it is published (returns once fsynced)."""
        await self._append({"k": "outcome", "job": job_id, "event": event.to_bytes().decode()})
