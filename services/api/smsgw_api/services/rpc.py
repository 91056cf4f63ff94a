"""The API's side of modem request/reply (USSD, balance)."""

from __future__ import annotations

from typing import Literal

from smsgw_api.problems import Problem
from smsgw_shared.amqp import Outgoing, PublishError, Topology, UnroutableError
from smsgw_shared.amqp.rpc import RpcClient as AmqpRpc
from smsgw_shared.amqp.rpc import RpcTimeout
from smsgw_shared.messages import ModemReply, ModemRequest


class RpcClient:
    """Asks a modem worker and maps failures to problems (404, 503, 504)."""

    def __init__(self, rpc: AmqpRpc, topology: Topology, modem_ids: set[str]) -> None:
        self.rpc = rpc
        self.topology = topology
        self.modem_ids = modem_ids

    async def modem(
        self, modem_id: str, action: Literal["ussd", "balance"], code: str | None, timeout: float
    ) -> ModemReply:
        """Send a request to one modem and wait for its reply."""
        if modem_id not in self.modem_ids:
            raise Problem(404, "unknown_modem", "Unknown modem", f"no modem {modem_id!r}")
        req = ModemRequest(
            modem_id=modem_id,
            action=action,
            code=code,
            timeout=timeout,
            reply_to="amq.rabbitmq.reply-to",
        )
        item = Outgoing(
            self.topology.rpc_exchange,
            self.topology.rpc_routing_key(modem_id),
            req,
            correlation_id=req.request_id,
            persistent=False,
        )
        try:
            return await self.rpc.call(item, ModemReply, timeout)
        except RpcTimeout as exc:
            raise Problem(
                504,
                "modem_timeout",
                "The modem did not answer in time",
                f"no reply from modem {modem_id!r} within {timeout:g}s",
            ) from exc
        except UnroutableError as exc:
            raise Problem(
                503,
                "modem_worker_unavailable",
                "No worker serves this modem",
                f"modem {modem_id!r} has no running worker",
            ) from exc
        except PublishError as exc:
            raise Problem(
                503,
                "broker_unavailable",
                "Broker unavailable",
                str(exc),
                headers={"Retry-After": "5"},
            ) from exc
