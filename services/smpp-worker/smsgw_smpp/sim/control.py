"""HTTP control interface of the SMSC simulator (aiohttp); documented in docs/smpp.md."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from smsgw_shared.sms import SmsError, build_smpp_parts
from smsgw_smpp import pdu as sp
from smsgw_smpp.sim.decode import describe, reassemble
from smsgw_smpp.sim.server import SmscServer
from smsgw_smpp.status import status_name

SERVER_KEY: web.AppKey[SmscServer] = web.AppKey("server", SmscServer)


def _srv(request: web.Request) -> SmscServer:
    return request.app[SERVER_KEY]


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


async def get_sent(request: web.Request) -> web.Response:
    """Messages received (parts reassembled); `?raw=1` lists PDUs; `?since=N` skips N PDUs."""
    srv = _srv(request)
    since = int(request.query.get("since", "0"))
    records = srv.records[since:]
    if request.query.get("raw"):
        return web.json_response([describe(r) for r in records])
    return web.json_response(reassemble(records))


async def get_count(request: web.Request) -> web.Response:
    """How many submit_sm were accepted (cheap, for polling)."""
    return web.json_response({"pdus": len(_srv(request).records)})


async def get_stats(request: web.Request) -> web.Response:
    """Counters, sessions and the average submit rate."""
    srv = _srv(request)
    sessions = [{"system_id": s.system_id, "kind": s.kind, "peer": s.peer} for s in srv.sessions]
    return web.json_response(
        srv.stats.as_dict()
        | {
            "sessions": sessions,
            "held": len(srv.held),
            "pending_receipts": len(srv.pending_receipts),
        }
    )


async def get_config(request: web.Request) -> web.Response:
    """The current behaviour settings."""
    return web.json_response(_srv(request).config.as_dict())


async def post_config(request: web.Request) -> web.Response:
    """Change behaviour: dlr_delay, outcomes, id_format, tps, errors, hold, … (partial)."""
    srv = _srv(request)
    body = await _json(request)
    try:
        srv.configure(body)
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"unknown setting {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    return web.json_response(srv.config.as_dict())


async def post_reset(request: web.Request) -> web.Response:
    """Forget recorded messages and counters."""
    _srv(request).reset()
    return web.json_response({"ok": True})


async def post_disconnect(request: web.Request) -> web.Response:
    """Drop sessions: `{"mode": "close"|"unbind", "system_id": optional}`."""
    body = await _json(request) if request.can_read_body else {}
    n = _srv(request).disconnect(body.get("mode", "close"), body.get("system_id"))
    return web.json_response({"sessions": n})


async def post_release(request: web.Request) -> web.Response:
    """Send the submit_sm_resp kept back while `hold` was on (and turn hold off)."""
    srv = _srv(request)
    srv.config.hold = False
    return web.json_response({"released": srv.release_held()})


async def _await_all(futs: list[asyncio.Future[sp.Pdu] | None], timeout: float) -> list[str]:
    out = []
    for fut in futs:
        if fut is None:
            out.append("queued")
            continue
        try:
            pdu = await asyncio.wait_for(asyncio.shield(fut), timeout)
            out.append(status_name(pdu.status))
        except (TimeoutError, ConnectionError):
            out.append("no response")
    return out


async def post_inject(request: web.Request) -> web.Response:
    """Send an incoming SMS (deliver_sm) to the worker, split as asked; see docs/smpp.md."""
    srv = _srv(request)
    body = await _json(request)
    dc = int(body.get("data_coding", 0))
    split = body.get("split", "udh")
    base: dict[str, Any] = {
        "source_addr_ton": int(body.get("source_ton", 1)),
        "source_addr_npi": int(body.get("source_npi", 1)),
        "source_addr": str(body.get("from", "79160000001")),
        "dest_addr_ton": int(body.get("dest_ton", 0)),
        "dest_addr_npi": int(body.get("dest_npi", 0)),
        "destination_addr": str(body.get("to", "1234")),
    }
    extra = {int(k, 16): bytes.fromhex(v) for k, v in body.get("tlvs", {}).items()}
    pdus: list[tuple[dict[str, Any], dict[int, bytes]]] = []
    if dc in (2, 4):
        payload = bytes.fromhex(body.get("hex", ""))
        pdus.append((base | {"data_coding": dc, "short_message": payload}, dict(extra)))
    else:
        try:
            msg = build_smpp_parts(
                body.get("text", ""),
                data_coding=dc,
                mode=split,
                ref_bits=16 if int(body.get("ref_bits", 8)) == 16 else 8,
            )
        except SmsError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        for part in msg.parts:
            fields = base | {
                "data_coding": msg.data_coding,
                "esm_class": part.esm_class,
                "short_message": part.short_message,
            }
            tlvs = dict(extra)
            if part.sar_msg_ref_num is not None:
                tlvs[0x020C] = part.sar_msg_ref_num.to_bytes(2, "big")
                tlvs[0x020E] = bytes((part.sar_total_segments or 0,))
                tlvs[0x020F] = bytes((part.sar_segment_seqnum or 0,))
            if part.message_payload is not None:
                tlvs[sp.TLV_MESSAGE_PAYLOAD] = part.message_payload
            pdus.append((fields, tlvs))
    if body.get("reverse"):
        pdus.reverse()  # parts out of order, as real networks deliver them
    futs = [srv.deliver(body.get("system_id"), f, t) for f, t in pdus]
    statuses = await _await_all(futs, float(body.get("timeout", 10)))
    return web.json_response({"parts": len(pdus), "statuses": statuses})


async def post_inject_raw(request: web.Request) -> web.Response:
    """Write raw bytes (`{"hex": …}`) to a receiving session: for malformed-PDU tests."""
    srv = _srv(request)
    body = await _json(request)
    session = srv.receiver_for(body.get("system_id"))
    if session is None:
        raise web.HTTPConflict(text="no bound receiver")
    session.write(bytes.fromhex(body["hex"]))
    return web.json_response({"ok": True, "seq_hint": session.seq})


async def post_receipt(request: web.Request) -> web.Response:
    """Send a receipt now for `message_id` with `stat` (default DELIVRD)."""
    srv = _srv(request)
    body = await _json(request)
    rec = srv.by_id.get(str(body.get("message_id")))
    if rec is None:
        raise web.HTTPNotFound(text="unknown message_id")
    srv.send_receipt(rec, body.get("stat", "DELIVRD"))
    return web.json_response({"ok": True})


def build_app(server: SmscServer) -> web.Application:
    """The aiohttp application for the control port."""
    app = web.Application()
    app[SERVER_KEY] = server
    app.router.add_get("/sent", get_sent)
    app.router.add_get("/sent/count", get_count)
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/config", get_config)
    app.router.add_post("/config", post_config)
    app.router.add_post("/reset", post_reset)
    app.router.add_post("/disconnect", post_disconnect)
    app.router.add_post("/release", post_release)
    app.router.add_post("/inject", post_inject)
    app.router.add_post("/inject_raw", post_inject_raw)
    app.router.add_post("/receipt", post_receipt)
    return app
