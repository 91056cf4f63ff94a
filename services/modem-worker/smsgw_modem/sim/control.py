"""HTTP control interface of the modem simulator (aiohttp); documented in docs/modems.md."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from smsgw_modem.sim.state import OUTCOME_STATUS, UssdReply

if TYPE_CHECKING:
    from smsgw_modem.sim.runner import Simulator
    from smsgw_modem.sim.server import DeviceServer

SIM_KEY: web.AppKey[Simulator] = web.AppKey("simulator")


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _server(request: web.Request) -> DeviceServer | None:
    sim = request.app[SIM_KEY]
    try:
        n = int(request.match_info["n"])
        return sim.servers[n - 1] if n >= 1 else None
    except (ValueError, IndexError):
        return None


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data: object = await request.json()
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="a JSON object is expected")
    return {str(k): v for k, v in data.items()}


def _describe(server: DeviceServer) -> dict[str, Any]:
    return server.device.state.summary() | {
        "tcp": f"{server.host}:{server.port}",
        "url": f"socket://{server.host}:{server.port}",
        "pty": server.pty_path,
        "pty_link": str(server.pty_link) if server.pty_link else None,
        "sessions": sorted(s.kind for s in server.device.sessions),
    }


async def list_modems(request: web.Request) -> web.Response:
    """GET /modems."""
    return web.json_response([_describe(s) for s in request.app[SIM_KEY].servers])


async def get_modem(request: web.Request) -> web.Response:
    """GET /modems/{n}."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    return web.json_response(_describe(server) | {"commands": server.device.command_log[-50:]})


async def sent(request: web.Request) -> web.Response:
    """GET /modems/{n}/sent: every SMS-SUBMIT accepted, decoded; DELETE clears."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    state = server.device.state
    if request.method == "DELETE":
        state.sent.clear()
        return web.json_response({"cleared": True})
    return web.json_response([p.to_json() for p in state.sent])


async def storage(request: web.Request) -> web.Response:
    """GET /modems/{n}/storage: messages in SIM storage."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    items = server.device.state.storage.items()
    return web.json_response(
        [{"index": i, "stat": m.stat, "kind": m.kind, "pdu": m.pdu} for i, m in sorted(items)]
    )


async def inject(request: web.Request) -> web.Response:
    """POST /modems/{n}/inject {"from", "text", "encoding"?, "flash"?}: an SMS arrives."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    body = await _body(request)
    if not isinstance(body.get("from"), str) or not isinstance(body.get("text"), str):
        return _bad("'from' and 'text' are required strings")
    try:
        indices = server.device.inject(
            body["from"], body["text"], body.get("encoding", "auto"), bool(body.get("flash"))
        )
    except OverflowError as exc:
        return _bad(str(exc), 507)
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response({"indices": indices, "parts": max(len(indices), 1)}, status=201)


async def faults(request: web.Request) -> web.Response:
    """POST /modems/{n}/faults: hang, cms_error, disconnect, gone, garbage, latency."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    device = server.device
    f = device.state.faults
    body = {"clear": True} if request.method == "DELETE" else await _body(request)
    if body.get("clear"):
        f.hang = f.hang_until_reconnect = False
        f.cms_error, f.cms_count, f.latency, f.send_latency, f.garbage_responses = None, 0, 0, 0, 0
        if device.gone:
            device.set_gone(False)
    if "hang" in body:
        f.hang = bool(body["hang"])
        f.hang_until_reconnect = f.hang and bool(body.get("until_reconnect", False))
        duration = body.get("duration")
        f.hang_until = time.monotonic() + float(duration) if f.hang and duration else None
    if "cms_error" in body:
        f.cms_error = int(body["cms_error"]) if body["cms_error"] is not None else None
        f.cms_count = int(body.get("count", 1)) if f.cms_error is not None else 0
    for key in ("latency", "send_latency"):
        if key in body:
            setattr(f, key, float(body[key]))
    if "garbage" in body:
        device.write_garbage(int(body["garbage"]))
    if "garbage_responses" in body:
        f.garbage_responses = int(body["garbage_responses"])
    if body.get("disconnect"):
        device.disconnect()
    if "gone" in body:
        gone = body["gone"]
        if gone is False or gone == 0:
            device.set_gone(False)
        else:
            device.set_gone(True, None if gone is True else float(gone))
    return web.json_response(f.to_json())


async def ussd(request: web.Request) -> web.Response:
    """POST /modems/{n}/ussd {"code"?, "reply", "dcs"?, "status"?, "delay"?, "hex"?, "balance"?}."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    state = server.device.state
    body = await _body(request)
    if "reply" in body:
        reply = UssdReply(
            str(body["reply"]),
            int(body.get("dcs", 15)),
            int(body.get("status", 0)),
            float(body.get("delay", 0.0)),
        )
        if body.get("code"):
            state.ussd[str(body["code"])] = reply
        else:
            state.ussd_default = reply
    if "hex" in body:
        state.ussd_hex = bool(body["hex"])
    if "balance" in body:
        state.balance_text = str(body["balance"])
    return web.json_response({"codes": sorted(state.ussd), "hex": state.ussd_hex})


async def reports(request: web.Request) -> web.Response:
    """POST /modems/{n}/reports {"delay"?, "outcome"?, "status"?}: status report behaviour."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    settings = server.device.state.reports
    body = await _body(request)
    if "outcome" in body:
        if body["outcome"] not in (*OUTCOME_STATUS, "none"):
            return _bad(f"outcome must be one of {[*OUTCOME_STATUS, 'none']}")
        settings.outcome = body["outcome"]
    if "delay" in body:
        settings.delay = float(body["delay"])
    if "status" in body:
        settings.status = None if body["status"] is None else int(body["status"])
    return web.json_response(
        {"delay": settings.delay, "outcome": settings.outcome, "status": settings.status}
    )


async def network(request: web.Request) -> web.Response:
    """POST /modems/{n}/network {"rssi"?, "operator"?, "registered"?, "noise_interval"?, "pin"?}."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    device = server.device
    state = device.state
    body = await _body(request)
    if "rssi" in body:
        state.rssi = int(body["rssi"])
    if "operator" in body:
        state.operator = str(body["operator"])
    if "registered" in body:
        state.reg_stat = 1 if body["registered"] else 2
    if "noise_interval" in body:
        state.noise_interval = float(body["noise_interval"])
        device.start_noise()
    if "pin" in body:
        state.pin = str(body["pin"])
        state.pin_ok = not state.pin
    return web.json_response(state.summary())


async def urc(request: web.Request) -> web.Response:
    """POST /modems/{n}/urc {"line": "^RSSI: 12"}: send an unsolicited line now."""
    server = _server(request)
    if server is None:
        return _bad("no such modem", 404)
    body = await _body(request)
    server.device.urc(str(body.get("line", "")), body.get("pdu"))
    return web.json_response({"sent": True})


def make_app(sim: Simulator) -> web.Application:
    """The control application."""
    app = web.Application()
    app[SIM_KEY] = sim
    app.router.add_get("/modems", list_modems)
    app.router.add_get("/modems/{n}", get_modem)
    app.router.add_route("GET", "/modems/{n}/sent", sent)
    app.router.add_route("DELETE", "/modems/{n}/sent", sent)
    app.router.add_get("/modems/{n}/storage", storage)
    app.router.add_post("/modems/{n}/inject", inject)
    app.router.add_post("/modems/{n}/faults", faults)
    app.router.add_delete("/modems/{n}/faults", faults)
    app.router.add_post("/modems/{n}/ussd", ussd)
    app.router.add_post("/modems/{n}/reports", reports)
    app.router.add_post("/modems/{n}/network", network)
    app.router.add_post("/modems/{n}/urc", urc)
    return app
