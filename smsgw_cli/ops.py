"""The ops commands: `smsgw status`, `send`, `tail`, `messages show`, `webhooks …`.

They talk to a gateway's API over HTTP (so they work against a remote one): the URL from
`--url` or `SMSGW_API_URL` (default http://127.0.0.1:8000), the key from `--key` or
`SMSGW_API_KEY`. Exit codes: 0 fine; 1 the API answered an error, or `status` found
something down, or a send was not accepted; 2 usage (no key, a bad CSV); 3 the API could
not be reached; 4 the key was refused (401) or lacks the scope (403).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 1, 2, 3, 4
FINAL = {
    "delivered",
    "undelivered",
    "expired",
    "failed",
    "rejected",
    "canceled",
    "partially_delivered",
}


class OpsError(Exception):
    """A message for the operator and the exit code it means."""

    def __init__(
        self, message: str, code: int = EXIT_ERROR, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.problem = problem or {}  # the API's problem details, when it answered one


def _fail(message: str, code: int = EXIT_ERROR, problem: dict[str, Any] | None = None) -> NoReturn:
    raise OpsError(message, code, problem)


class Api:
    """A small client of one gateway's /v1 API, turning failures into `OpsError`s."""

    def __init__(self, args: argparse.Namespace) -> None:
        import httpx

        self.url = (args.url or os.environ.get("SMSGW_API_URL") or DEFAULT_URL).rstrip("/")
        key = args.key or os.environ.get("SMSGW_API_KEY") or ""
        if not key.strip():
            _fail("no API key: pass --key or set SMSGW_API_KEY", EXIT_USAGE)
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key.strip()}", "User-Agent": "smsgw-cli"},
            timeout=httpx.Timeout(args.timeout, connect=min(args.timeout, 10.0)),
        )

    def close(self) -> None:
        self.http.close()

    def unreachable(self, exc: Exception) -> NoReturn:
        _fail(
            f"cannot reach the API at {self.url} ({type(exc).__name__}: {exc or 'no answer'});"
            " is it running? (set --url or SMSGW_API_URL)",
            EXIT_UNREACHABLE,
        )

    def check(self, r: httpx.Response) -> None:
        """Raise an `OpsError` for an error answer (problem details read when given)."""
        if r.status_code < 400:
            return
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = body.get("code", "")
        detail = body.get("detail") or body.get("title") or r.reason_phrase
        if r.status_code == 401:
            _fail(
                f"the API at {self.url} refused the key (401 {code or 'unauthorized'}):"
                " check --key or SMSGW_API_KEY",
                EXIT_REFUSED,
            )
        if r.status_code == 403:
            _fail(f"not allowed (403 {code}): {detail}", EXIT_REFUSED)
        _fail(
            f"{r.request.method} {r.request.url.path}: {r.status_code} {code}: {detail}",
            problem=body,
        )

    def request(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            self.unreachable(exc)
        self.check(r)
        return r.json() if r.content else None


# -- output helpers -------------------------------------------------------------------------


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _since(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(ts)).total_seconds()
    except ValueError:
        return None


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _table(rows: list[list[str]], out: TextIO = sys.stdout) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        out.write("\n")


# -- smsgw status ---------------------------------------------------------------------------


def cmd_status(api: Api, args: argparse.Namespace) -> int:
    s = api.request("GET", "/v1/status")
    if args.json:
        _dump(s)
        return 0 if s["ok"] else EXIT_ERROR
    head = "OK" if s["ok"] else f"DOWN ({len(s['problems'])} problem(s))"
    print(f"smsgw at {api.url}: {head}")
    print("routes:")
    rows = [["ROUTE", "STATE", "SIGNAL", "OPERATOR", "QUEUE", "IN FLIGHT", "LAST SEEN"]]
    for r in s["routes"]:
        state = r["state"] + (" (throttled)" if r.get("throttled") else "")
        rows.append(
            [
                r["route"],
                state,
                f"{r['signal_dbm']} dBm" if r.get("signal_dbm") is not None else "-",
                r.get("operator") or "-",
                str(r["queue_depth"]) if r.get("queue_depth") is not None else "-",
                str(r["in_flight"]) if r.get("in_flight") is not None else "-",
                _ago(_since(r.get("last_seen"))) + (" ago" if r.get("last_seen") else ""),
            ]
        )
    _table(rows)
    print("queues:")
    rows = [["QUEUE", "JOBS", "CONSUMERS", "DEAD", "QUEUED", "OLDEST"]]
    for q in s["queues"]:

        def n(v: Any) -> str:
            return "-" if v is None else str(v)

        rows.append(
            [
                q["name"],
                n(q["messages"]),
                n(q["consumers"]),
                n(q.get("dead_letters")),
                n(q.get("queued")),
                _ago(q.get("oldest_age_seconds")),
            ]
        )
    _table(rows)
    ob, wh = s["outbox"], s["webhooks"]
    print(
        f"outbox: {ob['backlog']} job(s) not yet published, oldest {_ago(ob['oldest_age_seconds'])}"
    )
    print(
        f"webhooks: {wh['pending']} pending delivery(ies), {wh['retrying']} retrying,"
        f" oldest {_ago(wh['oldest_age_seconds'])}; {wh.get('dead_last_hour', 0)} failed"
        " for good in the last hour"
    )
    for title, items in (("problems", s["problems"]), ("warnings", s["warnings"])):
        if items:
            print(f"{title}:")
            for p in items:
                print(f"  - {p}")
    return 0 if s["ok"] else EXIT_ERROR


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
        _fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)
    with f:
        reader = csv.DictReader(f)
        fields = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
        to_col = next((fields[c] for c in ("to", "phone", "number") if c in fields), None)
        text_col = next((fields[c] for c in ("text", "message") if c in fields), None)
        if to_col is None:
            _fail(f"{path}: the header needs a 'to' column (and 'text', or --text)", EXIT_USAGE)
        rows = []
        for i, row in enumerate(reader, start=2):
            to = (row.get(to_col) or "").strip()
            text = (row.get(text_col) or "") if text_col else ""
            text = text or (default_text or "")
            if not to:
                continue
            if not text:
                _fail(f"{path} line {i}: no text (add a 'text' column or pass --text)", EXIT_USAGE)
            rows.append((to, text))
    if not rows:
        _fail(f"{path}: no recipients", EXIT_USAGE)
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
        _fail("give TO and TEXT, or --csv FILE", EXIT_USAGE)
    r = api.request("POST", "/v1/messages", json=_send_body(args, [args.to], args.text))
    if args.json and not args.wait:
        _dump(r)
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
        if status in FINAL:
            break
        time.sleep(0.5)
    if args.json:
        _dump(msg)
    if status not in FINAL:
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
        _dump(summary | {"ids": ids})
    else:
        print(
            f"{len(rows)} recipient(s): {accepted} accepted, {rejected} rejected, {failed} not sent"
        )
    return 0 if accepted == len(rows) else EXIT_ERROR


# -- smsgw tail -----------------------------------------------------------------------------


def _event_line(ev: dict[str, Any]) -> str:
    d = ev.get("data") or {}
    t = ev.get("type", "?")
    ts = (ev.get("timestamp") or "")[11:19]
    if t == "message.status":
        extra = f" {d.get('error_code')}" if d.get("error_code") else ""
        return f"{ts} {t:<16} {d.get('message_id')} {d.get('to')} {d.get('status')}" + (
            f" via {d.get('route')}{extra}"
        )
    if t == "message.received":
        text = (d.get("text") or "").replace("\n", " ")
        return f"{ts} {t:<16} {d.get('from')} → {d.get('to') or '-'} via {d.get('route')}: {text}"
    if t == "route.state":
        extra = "".join(
            f" {label} {d[k]}"
            for label, k in (("signal", "signal_dbm"), ("queue", "queue_depth"))
            if d.get(k) is not None
        )
        return f"{ts} {t:<16} {d.get('route')} {d.get('previous') or '-'} → {d.get('state')}{extra}"
    return f"{ts} {t:<16} {json.dumps(d, ensure_ascii=False)}"


def cmd_tail(api: Api, args: argparse.Namespace) -> int:
    import httpx

    params: dict[str, str] = {}
    if args.type:
        params["types"] = ",".join(args.type)
    if args.route:
        params["route"] = ",".join(args.route)
    if args.since:
        params["since"] = args.since
    seen = 0
    last_id: str | None = None
    connected_once = live = False
    while True:
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            with api.http.stream(
                "GET",
                "/v1/events",
                params=params,
                headers=headers,
                timeout=httpx.Timeout(args.timeout, read=None),
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    api.check(r)
                connected_once = True
                event_id: str | None = None
                data: list[str] = []
                for line in r.iter_lines():
                    if line.startswith("retry:") and not live:
                        # The API sends this once the stream is live: nothing is missed now.
                        live = True
                        print(f"following {api.url}/v1/events (Ctrl-C stops)", file=sys.stderr)
                    elif line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        ev = json.loads("\n".join(data))
                        data = []
                        last_id = event_id or last_id
                        if args.json:
                            print(json.dumps(ev, ensure_ascii=False), flush=True)
                        else:
                            print(_event_line(ev), flush=True)
                        seen += 1
                        if args.count and seen >= args.count:
                            return 0
        except httpx.TransportError as exc:
            if not connected_once:
                api.unreachable(exc)
            print(f"smsgw: stream lost ({type(exc).__name__}); reconnecting…", file=sys.stderr)
            time.sleep(1)
            continue
        if not connected_once:
            return EXIT_ERROR
        print("smsgw: the API closed the stream; reconnecting…", file=sys.stderr)
        time.sleep(1)


# -- smsgw messages show --------------------------------------------------------------------


_REPORTED_NOTE = re.compile(r"(?:^reported at \S+$| \(reported at \S+\)$)")


def _detail(h: dict[str, Any]) -> str:
    """A history line's detail without the "reported at …" note the REPORTED column shows."""
    detail = h.get("detail") or ""
    return _REPORTED_NOTE.sub("", detail) if h.get("reported_at") else detail


def cmd_messages_show(api: Api, args: argparse.Namespace) -> int:
    m = api.request("GET", f"/v1/messages/{args.id}")
    if args.json:
        _dump(m)
        return 0
    print(f"message {m['id']}  {m['status']}")
    for label, key in (
        ("to", "to"),
        ("from", "from"),
        ("route", "route"),
        ("reference", "reference"),
        ("created", "created_at"),
        ("sent", "sent_at"),
        ("done", "done_at"),
    ):
        if m.get(key):
            print(f"  {label:<10} {m[key]}")
    print(f"  {'parts':<10} {m['parts']} ({m['encoding']})")
    if m.get("error_code") or m.get("error"):
        print(f"  {'error':<10} {m.get('error_code') or ''} {m.get('error') or ''}".rstrip())
    print(f"  {'text':<10} {m['text']}")
    if m.get("parts_detail"):
        print("parts:")
        _table(
            [["#", "STATUS", "ROUTE", "PROVIDER ID", "ERROR"]]
            + [
                [
                    str(p["index"]),
                    p["status"],
                    p["route"] or "-",
                    p["provider_id"] or "-",
                    p["error_code"] or "",
                ]
                for p in m["parts_detail"]
            ]
        )
    if m.get("history"):
        print("history:")
        # REPORTED: the time the report itself gave (a receipt's minute-resolution done
        # date), shown where it differs from when the line happened (AT, the order).
        _table(
            [["AT", "STATE", "SOURCE", "REPORTED", "DETAIL"]]
            + [
                [
                    h["at"] or "",
                    h["state"] + (f" (part {h['part']})" if h.get("part") else ""),
                    h["source"] or "",
                    h["reported_at"] if h.get("reported_at") not in (None, h["at"]) else "",
                    " ".join(x for x in (h.get("error_code"), _detail(h)) if x),
                ]
                for h in m["history"]
            ]
        )
    return 0


# -- smsgw webhooks -------------------------------------------------------------------------


def cmd_webhooks_list(api: Api, args: argparse.Namespace) -> int:
    data = api.request("GET", "/v1/webhooks")["data"]
    if args.json:
        _dump(data)
        return 0
    if not data:
        print("no webhooks")
        return 0
    rows = [["ID", "URL", "EVENTS", "ROUTES", "DESCRIPTION"]]
    for w in data:
        rows.append(
            [
                w["id"],
                w["url"],
                ",".join(w["events"]),
                ",".join(w["routes"]) or "*",
                w.get("description") or "",
            ]
        )
    _table(rows)
    return 0


def cmd_webhooks_deliveries(api: Api, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    data = api.request("GET", f"/v1/webhooks/{args.webhook_id}/deliveries", params=params)["data"]
    if args.json:
        _dump(data)
        return 0
    if not data:
        print("no deliveries")
        return 0
    rows = [["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "CREATED"]]
    for d in data:
        last = str(d["last_status_code"] or "") or (d.get("last_error") or "")[:40]
        rows.append(
            [d["id"], d["event_type"], d["status"], str(d["attempts"]), last, d["created_at"]]
        )
    _table(rows)
    return 0


def cmd_webhooks_redeliver(api: Api, args: argparse.Namespace) -> int:
    d = api.request(
        "POST", f"/v1/webhooks/{args.webhook_id}/deliveries/{args.delivery_id}/redeliver"
    )
    if args.json:
        _dump(d)
    else:
        print(f"delivery {d['id']} ({d['event_type']}) is due again: {d['status']}")
    return 0


# -- wiring ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    """Run one ops command and exit with its code."""
    code = EXIT_ERROR
    try:
        api = Api(args)
        try:
            code = args.ops(api, args)
        finally:
            api.close()
    except OpsError as exc:
        print(f"smsgw: {exc}", file=sys.stderr)
        code = exc.code
    except BrokenPipeError:
        code = 0
    sys.exit(code)


def add_ops_commands(sub: Any) -> None:
    """Add the ops subcommands to `smsgw`'s subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"API URL (default: $SMSGW_API_URL or {DEFAULT_URL})")
    common.add_argument("--key", help="API key (default: $SMSGW_API_KEY)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    def add(parent: Any, name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help_, parents=[common])
        sp.set_defaults(func=run, ops=fn)
        return sp

    add(sub, "status", cmd_status, "the gateway at a glance (exit 1 when something is down)")

    sp = add(sub, "send", cmd_send, "send one SMS, or a CSV of recipients and texts")
    sp.add_argument("to", nargs="?", help="recipient number")
    sp.add_argument("text", nargs="?", help="message text")
    sp.add_argument("--csv", metavar="FILE", help="CSV with a 'to' and a 'text' column (- : stdin)")
    sp.add_argument("--text", dest="csv_text", help="the text of CSV rows without one")
    sp.add_argument("--from", dest="sender", help="sender id")
    sp.add_argument("--route", help="modem:m1, smpp:b1, modem:*, pool:name")
    sp.add_argument("--ref", help="client reference")
    sp.add_argument("--batch", type=int, default=100, help="recipients per request (CSV)")
    sp.add_argument("--progress", action="store_true", help="show the progress bar off a tty")
    sp.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=60.0,
        default=None,
        metavar="SECONDS",
        help="follow one message until its final state (exit 1 unless delivered)",
    )
    sp.set_defaults(ops=_send_entry)

    sp = add(sub, "tail", cmd_tail, "follow live events")
    sp.add_argument(
        "--type",
        action="append",
        help="message.status, message.status.delivered, message.received, route.state",
    )
    sp.add_argument("--route", action="append", help="e.g. smpp:b1, modem:* (repeatable)")
    sp.add_argument("--since", help="replay from an event id or RFC 3339 time")
    sp.add_argument("--count", type=int, help="exit after this many events")

    msgs = sub.add_parser("messages", help="messages").add_subparsers(
        dest="messages", required=True
    )
    sp = add(msgs, "show", cmd_messages_show, "a message with its parts and history")
    sp.add_argument("id")

    hooks = sub.add_parser("webhooks", help="webhooks").add_subparsers(
        dest="webhooks", required=True
    )
    add(hooks, "list", cmd_webhooks_list, "list webhooks")
    sp = add(hooks, "deliveries", cmd_webhooks_deliveries, "a webhook's recent deliveries")
    sp.add_argument("webhook_id")
    sp.add_argument("--status", choices=["pending", "succeeded", "dead"])
    sp.add_argument("--limit", type=int, default=20)
    sp = add(hooks, "redeliver", cmd_webhooks_redeliver, "deliver a delivery again")
    sp.add_argument("webhook_id")
    sp.add_argument("delivery_id")


def _send_entry(api: Api, args: argparse.Namespace) -> int:
    # `--text` is the CSV's default text; the positional TEXT is the single message's.
    if args.csv or (args.csv_text is not None and args.text is None):
        args.text = args.csv_text
    return cmd_send(api, args)
