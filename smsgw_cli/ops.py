"""The ops commands: `smsgw status`, `send`, `tail`, `messages show`, `webhooks …`.

They talk to a gateway's API over HTTP (so they work against a remote one): the URL from
`--url` or `SMSGW_API_URL` (default http://127.0.0.1:8000), the key from `--key` or
`SMSGW_API_KEY`. Exit codes: 0 fine; 1 the API answered an error, or `status` found
something down, or a send was not accepted; 2 usage (no key, a bad CSV); 3 the API could
not be reached; 4 the key was refused (401) or lacks the scope (403).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from smsgw_cli.ops_client import DEFAULT_URL, EXIT_ERROR, Api, OpsError, ago, dump, since, table
from smsgw_cli.ops_send import cmd_send, send_entry

# -- smsgw status ---------------------------------------------------------------------------


def cmd_status(api: Api, args: argparse.Namespace) -> int:
    s = api.request("GET", "/v1/status")
    if args.json:
        dump(s)
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
                ago(since(r.get("last_seen"))) + (" ago" if r.get("last_seen") else ""),
            ]
        )
    table(rows)
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
                ago(q.get("oldest_age_seconds")),
            ]
        )
    table(rows)
    ob, wh = s["outbox"], s["webhooks"]
    print(
        f"outbox: {ob['backlog']} job(s) not yet published, oldest {ago(ob['oldest_age_seconds'])}"
    )
    print(
        f"webhooks: {wh['pending']} pending delivery(ies), {wh['retrying']} retrying,"
        f" oldest {ago(wh['oldest_age_seconds'])}; {wh.get('dead_last_hour', 0)} failed"
        " for good in the last hour"
    )
    for title, items in (("problems", s["problems"]), ("warnings", s["warnings"])):
        if items:
            print(f"{title}:")
            for p in items:
                print(f"  - {p}")
    return 0 if s["ok"] else EXIT_ERROR


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
        dump(m)
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
        table(
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
        table(
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
        dump(data)
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
    table(rows)
    return 0


def cmd_webhooks_deliveries(api: Api, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    data = api.request("GET", f"/v1/webhooks/{args.webhook_id}/deliveries", params=params)["data"]
    if args.json:
        dump(data)
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
    table(rows)
    return 0


def cmd_webhooks_redeliver(api: Api, args: argparse.Namespace) -> int:
    d = api.request(
        "POST", f"/v1/webhooks/{args.webhook_id}/deliveries/{args.delivery_id}/redeliver"
    )
    if args.json:
        dump(d)
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
    sp.set_defaults(ops=send_entry)

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
