"""`/v1/routes` (modems and binds with live state) and the modem USSD/balance endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from smsgw_api.deps import AppState, ModemsKey, ReadKey, StateDep, route_allowed
from smsgw_api.problems import Problem
from smsgw_api.schemas import UssdRequest
from smsgw_shared.messages import ModemReply
from smsgw_shared.store.repos.keys import ApiKey
from smsgw_shared.store.repos.route_state import RouteStateRepository

router = APIRouter(tags=["routes"])

# A route whose last heartbeat is older than this many intervals is shown as stale.
STALE_AFTER_INTERVALS = 3


def _reply_view(reply: ModemReply) -> dict[str, Any]:
    return {
        "modem_id": reply.modem_id,
        "ok": reply.ok,
        "text": reply.raw,
        "amount": str(reply.amount) if reply.amount is not None else None,
        "currency": reply.currency,
        "error": reply.error,
    }


def _own_modem(state: AppState, key: ApiKey, modem_id: str) -> None:
    """404 for a modem outside a route-limited key's routes (as if it did not exist)."""
    if not route_allowed(state, key, f"modem:{modem_id}"):
        raise Problem(404, "unknown_modem", "Unknown modem", f"no modem {modem_id!r}")


@router.post("/v1/modems/{modem_id}/ussd", summary="Run a USSD request on a modem")
async def ussd(modem_id: str, body: UssdRequest, key: ModemsKey, state: StateDep) -> dict[str, Any]:
    """Ask the modem's worker over RabbitMQ; `504` if it does not answer in time. Needs the
    `modems` scope (USSD codes can move balance or set call forwarding); a route-limited
    key reaches only its own modems."""
    _own_modem(state, key, modem_id)
    reply = await state.rpc.modem(modem_id, "ussd", body.code, body.timeout)
    return _reply_view(reply)


@router.get("/v1/modems/{modem_id}/balance", summary="The SIM balance of a modem")
async def balance(modem_id: str, key: ModemsKey, state: StateDep) -> dict[str, Any]:
    """USSD (or the configured SIM-toolkit script); amount and currency when parseable.
    Needs the `modems` scope; a route-limited key reaches only its own modems."""
    _own_modem(state, key, modem_id)
    reply = await state.rpc.modem(modem_id, "balance", None, state.settings.api.rpc_timeout)
    return _reply_view(reply)


async def live_states(state: AppState) -> dict[str, dict[str, Any]]:
    """route → latest heartbeat row."""
    return {r["route"]: r for r in await RouteStateRepository(state.engine).all()}


@router.get("/v1/routes", summary="Modems and binds with their live state")
async def routes(key: ReadKey, state: StateDep) -> dict[str, Any]:
    """Every configured modem and bind, the routing rules, and the last heartbeat of each
    (a route-limited key: its own modems and binds only)."""
    live = await live_states(state)
    now = datetime.now(UTC)
    interval = state.settings.workers.heartbeat_interval

    def view(route: str, kind: str, extra: dict[str, Any]) -> dict[str, Any]:
        row = live.get(route)
        out: dict[str, Any] = {"route": route, "kind": kind, **extra}
        if row is None:
            out.update(state="unknown", connected=False, last_seen=None)
            return out
        age = (now - row["last_seen"]).total_seconds()
        stale = age > STALE_AFTER_INTERVALS * max(interval, 1.0)
        out.update(
            state="stale" if stale else row["state"],
            connected=bool(row["connected"]) and not stale,
            signal_dbm=row["signal_dbm"],
            operator=row["operator"],
            queue_depth=row["queue_depth"],
            in_flight=row["in_flight"],
            details=row["details"],
            last_seen=row["last_seen"].isoformat(),
        )
        return out

    s = state.settings
    return {
        "modems": [
            view(f"modem:{m.id}", "modem", {"id": m.id, "url": m.url, "pools": m.pools})
            for m in s.modems
            if route_allowed(state, key, f"modem:{m.id}")
        ],
        "binds": [
            view(
                f"smpp:{b.id}",
                "smpp",
                {"id": b.id, "host": b.host, "port": b.port, "mode": b.mode, "pools": b.pools},
            )
            for b in s.smpp.binds
            if route_allowed(state, key, f"smpp:{b.id}")
        ],
        "routing": {
            "default": s.routing.default,
            "rules": [r.model_dump(exclude_none=True) for r in s.routing.rules],
        },
    }
