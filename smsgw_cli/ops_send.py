"""`smsgw send`: one SMS, or a CSV of recipients and texts in batches."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from typing import Any

from smsgw_cli.ops_client import (
    EXIT_ERROR,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Api,
    OpsError,
    dump,
    fail,
)
from smsgw_shared.messages.states import MESSAGE_FINAL

# -- smsgw send -----------------------------------------------------------------------------


def _send_body(args: argparse.Namespace, to: list[str], text: str) -> dict[str, Any]:
    body: dict[str, Any] = {"to": to, "text": text}
    for field, value in (("from", args.sender), ("route", args.route), ("reference", args.ref)):
        if value:
            body[field] = value
    return body


def _csv_rows(path: str, default_text: str | None) -> list[tuple[str, str]]:
    """(to, text) of each row of a CSV with a header: `to` (or `phone`, `number`) and
    `text` (or `message`); rows without a text take `--text`."""
    try:
        f = sys.stdin if path == "-" else open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)
    with f:
        reader = csv.DictReader(f)
        fields = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
        to_col = next((fields[c] for c in ("to", "phone", "number") if c in fields), None)
        text_col = next((fields[c] for c in ("text", "message") if c in fields), None)
        if to_col is None:
            fail(f"{path}: the header needs a 'to' column (and 'text', or --text)", EXIT_USAGE)
        rows = []
        for i, row in enumerate(reader, start=2):
            to = (row.get(to_col) or "").strip()
            text = (row.get(text_col) or "") if text_col else ""
            text = text or (default_text or "")
            if not to:
                continue
            if not text:
                fail(f"{path} line {i}: no text (add a 'text' column or pass --text)", EXIT_USAGE)
            rows.append((to, text))
    if not rows:
        fail(f"{path}: no recipients", EXIT_USAGE)
    return rows


def _batches(rows: list[tuple[str, str]], size: int) -> Iterator[tuple[str, list[str]]]:
    """Consecutive rows with the same text, up to `size` recipients a request."""
    text: str | None = None
    to: list[str] = []
    for number, t in rows:
        if t != text or len(to) >= size:
            if to and text is not None:
                yield text, to
            text, to = t, []
        to.append(number)
    if to and text is not None:
        yield text, to


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, unless forced)."""

    def __init__(self, total: int, show: bool) -> None:
        self.total, self.done, self.show = total, 0, show

    def advance(self, n: int) -> None:
        self.done += n
        if self.show:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(f"\r[{bar}] {self.done}/{self.total}")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_send(api: Api, args: argparse.Namespace) -> int:
    if args.csv:
        return _send_csv(api, args)
    if not args.to or args.text is None:
        fail("give TO and TEXT, or --csv FILE", EXIT_USAGE)
    r = api.request("POST", "/v1/messages", json=_send_body(args, [args.to], args.text))
    if args.json and not args.wait:
        dump(r)
    m = r["messages"][0]
    if m["status"] == "rejected":
        print(f"rejected {m['to']}: {m.get('error_code')} {m.get('error') or ''}".rstrip())
        return EXIT_ERROR
    if not args.json:
        print(
            f"{m['id']}  {m['to']}  {m['status']}  {m['parts']} part(s) {m['encoding']}"
            f"  route {m.get('route') or '-'}"
        )
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.wait
    status = m["status"]
    msg: dict[str, Any] = {}
    while time.monotonic() < deadline:
        msg = api.request("GET", f"/v1/messages/{m['id']}")
        if msg["status"] != status and not args.json:
            print(f"{m['id']}  {msg['status']}")
        status = msg["status"]
        if status in MESSAGE_FINAL:
            break
        time.sleep(0.5)
    if args.json:
        dump(msg)
    if status not in MESSAGE_FINAL:
        print(f"smsgw: still {status} after {args.wait:g}s", file=sys.stderr)
        return EXIT_ERROR
    return 0 if status == "delivered" else EXIT_ERROR


def _send_csv(api: Api, args: argparse.Namespace) -> int:
    rows = _csv_rows(args.csv, args.text)
    progress = Progress(len(rows), args.progress or sys.stderr.isatty())
    accepted = rejected = failed = 0
    problems: list[str] = []
    ids = []
    for text, to in _batches(rows, args.batch):
        try:
            r = api.request("POST", "/v1/messages", json=_send_body(args, to, text))
        except OpsError as exc:
            if exc.code in (EXIT_UNREACHABLE, EXIT_REFUSED) and accepted == 0:
                raise  # nothing sent yet: the whole run cannot work
            if exc.problem.get("code") == "no_valid_recipients":
                for e in exc.problem.get("errors", []):
                    rejected += 1
                    problems.append(f"rejected {e.get('to')}: {e.get('code')}")
                failed += len(to) - len(exc.problem.get("errors", []))
                progress.advance(len(to))
                continue
            failed += len(to)
            problems.append(f"{len(to)} recipient(s) not sent ({to[0]}…): {exc}")
        else:
            for m in r["messages"]:
                if m["status"] == "rejected":
                    rejected += 1
                    problems.append(f"rejected {m['to']}: {m.get('error_code')}")
                else:
                    accepted += 1
                    ids.append(m["id"])
        progress.advance(len(to))
    for p in problems[:50]:
        print(f"  {p}", file=sys.stderr)
    if len(problems) > 50:
        print(f"  … and {len(problems) - 50} more", file=sys.stderr)
    summary = {"total": len(rows), "accepted": accepted, "rejected": rejected, "failed": failed}
    if args.json:
        dump(summary | {"ids": ids})
    else:
        print(
            f"{len(rows)} recipient(s): {accepted} accepted, {rejected} rejected, {failed} not sent"
        )
    return 0 if accepted == len(rows) else EXIT_ERROR


def send_entry(api: Api, args: argparse.Namespace) -> int:
    # `--text` is the CSV's default text; the positional TEXT is the single message's.
    if args.csv or (args.csv_text is not None and args.text is None):
        args.text = args.csv_text
    return cmd_send(api, args)
