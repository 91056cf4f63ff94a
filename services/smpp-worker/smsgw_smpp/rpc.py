"""query_sm (SMPP 3.4 §4.8) on request, locally and as request/reply over RabbitMQ.

Requests arrive on `{ns}.rpc.smpp.<bind_id>` (bound to the rpc exchange with key
`smpp.<bind_id>`); the reply goes to the request's `reply_to` with
`correlation_id = request_id`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from smsgw_shared.amqp import DeliveryInfo, Outgoing, Publisher, PublishError, QueueSpec, Topology
from smsgw_shared.messages import Payload, new_id
from smsgw_smpp import pdu as sp
from smsgw_smpp.bind import SmppBind
from smsgw_smpp.connection import SmppError
from smsgw_smpp.dlr import MESSAGE_STATES, stat_to_state
from smsgw_smpp.encode import address
from smsgw_smpp.ids import to_smsc_form
from smsgw_smpp.jobs import IdMap

log = logging.getLogger(__name__)


class SmppQueryRequest(Payload):
    """Ask one bind for the state of a message at the SMSC (query_sm)."""

    type: Literal["smpp_query"] = "smpp_query"
    request_id: str = Field(default_factory=new_id)
    provider_id: str  # normalised, as in the `sent` event
    source: str = ""  # the message's source address (sender), as submitted
    reply_to: str


class SmppQueryReply(Payload):
    """The SMSC's answer; `message_state` is the SMPP name (DELIVERED, ENROUTE…)."""

    type: Literal["smpp_query_reply"] = "smpp_query_reply"
    request_id: str
    bind_id: str
    ok: bool
    provider_id: str
    message_state: str | None = None
    state: str | None = None  # our status name for it (delivered, enroute…)
    final_date: datetime | None = None
    error_code: int | None = None
    error: str | None = None


def rpc_queue(topology: Topology, bind_id: str) -> str:
    """The request queue of one bind."""
    return rpc_queue_spec(topology, bind_id).name


def rpc_queue_spec(topology: Topology, bind_id: str) -> QueueSpec:
    """Quorum queue; requests expire after 2 min (the caller has given up by then)."""
    return topology.smpp_rpc_queues(bind_id)[0]


def parse_smpp_time(value: str) -> datetime | None:
    """Absolute time `YYMMDDhhmmsstnnp` (§7.1.1.1) as aware UTC; None when empty/invalid."""
    v = value.strip()
    if len(v) < 12 or not v[:12].isdigit():
        return None
    try:
        moment = datetime.strptime(v[:12], "%y%m%d%H%M%S")
    except ValueError:
        return None
    if len(v) >= 16 and v[13:15].isdigit() and v[15] in "+-":
        # nn quarter-hours from UTC; the local time minus the offset is UTC
        offset = timedelta(minutes=15 * int(v[13:15]))
        moment = moment - offset if v[15] == "+" else moment + offset
    return moment.replace(tzinfo=UTC)


async def query_sm(bind: SmppBind, ids: IdMap, provider_id: str, source: str) -> dict[str, Any]:
    """Ask the SMSC; raises `SmppError` for an error status, `Disconnected` when not bound."""
    cfg = bind.cfg
    smsc_id = ids.get(provider_id) or to_smsc_form(provider_id, cfg.id_format)
    ton, npi, addr = address(source or cfg.default_source, cfg.source_ton, cfg.source_npi)
    fields: dict[str, sp.FieldValue | str] = {
        "message_id": smsc_id,
        "source_addr_ton": ton,
        "source_addr_npi": npi,
        "source_addr": addr,
    }
    resp = await bind.request(sp.QUERY_SM, fields)
    if resp.status:
        raise SmppError(resp.status, "query_sm")
    name = MESSAGE_STATES.get(resp.num("message_state"), "UNKNOWN")
    return {
        "message_state": name,
        "state": stat_to_state(name),
        "final_date": parse_smpp_time(resp.text("final_date")),
        "error_code": resp.num("error_code"),
    }


class QueryResponder:
    """Consumer handler for one bind's rpc queue; always replies, never raises."""

    def __init__(self, bind: SmppBind, ids: IdMap, publisher: Publisher) -> None:
        self.bind = bind
        self.ids = ids
        self.publisher = publisher

    async def handle(self, req: SmppQueryRequest, info: DeliveryInfo) -> None:
        """Run the query and publish the reply to `reply_to`."""
        try:
            result = await query_sm(self.bind, self.ids, req.provider_id, req.source)
            reply = SmppQueryReply(
                request_id=req.request_id,
                bind_id=self.bind.id,
                ok=True,
                provider_id=req.provider_id,
                **result,
            )
        except Exception as exc:  # the caller gets the reason instead of a timeout
            reply = SmppQueryReply(
                request_id=req.request_id,
                bind_id=self.bind.id,
                ok=False,
                provider_id=req.provider_id,
                error=str(exc) or type(exc).__name__,
            )
        # The AMQP reply_to wins: RabbitMQ rewrites direct reply-to there, not in our JSON.
        reply_to = info.reply_to or req.reply_to
        out = Outgoing("", reply_to, reply, correlation_id=req.request_id, persistent=False)
        try:
            await self.publisher.publish(out)
        except PublishError as exc:
            log.warning("query reply not delivered: %s", exc, extra={"bind": self.bind.id})
