"""What a modem handed over (incoming SMS, delivery reports) that the broker has not yet
confirmed, kept on local disk.

A PDU read from the SIM is written here (fsynced) before it is deleted from the SIM; a
PDU routed directly (`+CMT`/`+CDS`) is written here as soon as it arrives. It leaves once
its event is confirmed. While the broker is away the SIM does not fill up and a direct
message does not live only in memory; after a restart the worker publishes what is left.
`<state_dir>/modem-<id>.inbox`, JSON lines, compacted to what is still pending.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from smsgw_modem.journal import JsonLinesLog


class Inbox(JsonLinesLog):
    """Pending PDUs by entry number, oldest first."""

    def __init__(self, path: Path, max_lines: int = 20000) -> None:
        super().__init__(path, max_lines)
        self._pending: OrderedDict[int, str] = OrderedDict()
        self._next = 1
        self._open()

    @classmethod
    def for_modem(cls, state_dir: str, modem_id: str) -> Inbox:
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / f"modem-{modem_id}.inbox")

    def _apply(self, record: dict[str, Any]) -> None:
        n = int(record["n"])
        if record["k"] == "in":
            self._pending[n] = str(record["pdu"])
        else:
            self._pending.pop(n, None)
        self._next = max(self._next, n + 1)

    def _snapshot(self) -> list[dict[str, Any]]:
        return [{"k": "in", "n": n, "pdu": pdu} for n, pdu in self._pending.items()]

    def pending(self) -> list[tuple[int, str]]:
        """Entries not yet confirmed, oldest first."""
        return list(self._pending.items())

    async def add(self, pdu: str) -> int:
        """Keep a PDU (returns once it is on disk); its entry number."""
        n = self._next
        self._next += 1
        await self._append({"k": "in", "n": n, "pdu": pdu})
        return n

    async def done(self, n: int) -> None:
        """Its event is confirmed: forget the entry."""
        if n in self._pending:
            await self._append({"k": "done", "n": n})
