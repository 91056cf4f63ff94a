"""A per-modem send journal: which parts of a job went out, and the outcome published.

A job redelivered after a crash must not be sent again: before the outcome is published it
is written here, and a redelivery re-publishes it instead of sending. Parts are recorded as
soon as the modem accepts them, so a retry of a half-sent multipart message resumes with
the same concatenation reference instead of sending the first parts twice.

Append-only JSON lines, fsynced; compacted on open and when it grows past `max_lines`.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
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


class SendJournal:
    """job_id → progress and outcome, persisted in `<state_dir>/modem-<id>.journal`."""

    def __init__(self, path: Path, keep: int = 5000, max_lines: int = 20000) -> None:
        self.path = path
        self.keep = keep
        self.max_lines = max_lines
        self._outcomes: OrderedDict[str, str] = OrderedDict()
        self._progress: dict[str, JobProgress] = {}
        self._lines = 0
        self._fh: TextIO | None = None
        self._load()
        self._compact()

    @classmethod
    def for_modem(cls, state_dir: str, modem_id: str) -> SendJournal:
        """The journal file of one modem."""
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / f"modem-{modem_id}.journal")

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as fh:
            for raw in fh:
                try:
                    self._apply(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    log.warning("journal: skipping a torn line", extra={"path": str(self.path)})

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

    def _append(self, record: dict[str, Any]) -> None:
        self._apply(record)
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._lines += 1
        if self._lines > self.max_lines:
            self._compact()

    def _compact(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        records: list[dict[str, Any]] = []
        for job, progress in self._progress.items():
            for index, mr in progress.parts.items():
                records.append(
                    {"k": "part", "job": job, "ref": progress.concat_ref, "i": index, "mr": mr}
                )
        for job, event in self._outcomes.items():
            records.append({"k": "outcome", "job": job, "event": event})
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._lines = len(records)

    def close(self) -> None:
        """Close the file (appends reopen it)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def outcome(self, job_id: str) -> StatusEvent | None:
        """The outcome already recorded for this job, if any."""
        raw = self._outcomes.get(job_id)
        return StatusEvent.from_bytes(raw) if raw is not None else None

    def progress(self, job_id: str) -> JobProgress:
        """Parts of this job already accepted by the modem."""
        return self._progress.get(job_id, JobProgress())

    def record_part(self, job_id: str, concat_ref: int | None, index: int, mr: int) -> None:
        """Remember that part `index` was accepted with TP-MR `mr`."""
        self._append({"k": "part", "job": job_id, "ref": concat_ref, "i": index, "mr": mr})

    def record_outcome(self, job_id: str, event: StatusEvent) -> None:
        """Remember the outcome event (before it is published)."""
        self._append({"k": "outcome", "job": job_id, "event": event.to_bytes().decode()})
