"""Broker topology as data: every exchange and queue name derives from the namespace.

Layout (ns = SMSGW_NAMESPACE):
- `{ns}.jobs` (direct): send jobs; routing key = job queue suffix (`modem.m1`, `modem.pool`,
  `smpp.b1`, `smpp.pool`, `pool.<name>`), one quorum queue `{ns}.jobs.<suffix>` each.
- `{ns}.events` (topic): worker events; keys `status.<state>`, `inbound.<route>`,
  `heartbeat.<route>`. The inbound service consumes `{ns}.inbound.status`,
  `{ns}.inbound.received`, `{ns}.inbound.heartbeat`; the API binds a transient queue per
  process for live streams.
- `{ns}.rpc` (direct): requests to one modem (`modem.<id>`), answered on direct reply-to.
- `{ns}.dlx` (direct): dead letters; every consumer queue `q` has `q.dlq` bound with key `q`.
- Delay queues `q.delay.<ms>`: TTL then dead-letter back to `q` through the default
  exchange. Retries wait there, never in a sleeping consumer.

Declaration is idempotent: every service declares what it uses at start, whoever is first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Quorum queues redeliver a message at most this many times before dead-lettering it, so a
# message that crashes its consumer every time cannot loop forever.
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class QueueSpec:
    """A queue and its arguments; `bindings` are (exchange, routing key) pairs."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: tuple[tuple[str, str], ...] = ()
    durable: bool = True


def route_suffix(route: str) -> str:
    """`modem:m1` → `modem.m1`; `modem:*` → `modem.pool`; `pool:x` → `pool.x`."""
    kind, _, name = route.partition(":")
    if kind not in ("modem", "smpp", "pool") or not name:
        raise ValueError(f"invalid route {route!r}")
    return f"{kind}.pool" if name == "*" else f"{kind}.{name}"


class Topology:
    """Names and queue specs for one namespace."""

    def __init__(self, namespace: str, retry_delays: list[float] | None = None) -> None:
        self.ns = namespace
        self.retry_delays_ms = sorted({int(d * 1000) for d in (retry_delays or [5, 30, 120, 600])})
        self.jobs_exchange = f"{namespace}.jobs"
        self.events_exchange = f"{namespace}.events"
        self.rpc_exchange = f"{namespace}.rpc"
        self.dlx = f"{namespace}.dlx"
        self.status_queue = f"{namespace}.inbound.status"
        self.received_queue = f"{namespace}.inbound.received"
        self.heartbeat_queue = f"{namespace}.inbound.heartbeat"

    # -- names ---------------------------------------------------------------------------
    def job_queue(self, route: str) -> str:
        """The queue a route's jobs wait in."""
        return f"{self.ns}.jobs.{route_suffix(route)}"

    def job_routing_key(self, route: str) -> str:
        return route_suffix(route)

    def rpc_queue(self, modem_id: str) -> str:
        return f"{self.ns}.rpc.modem.{modem_id}"

    @staticmethod
    def rpc_routing_key(modem_id: str) -> str:
        return f"modem.{modem_id}"

    @staticmethod
    def dlq(queue: str) -> str:
        return f"{queue}.dlq"

    @staticmethod
    def delay_queue(queue: str, delay_ms: int) -> str:
        return f"{queue}.delay.{delay_ms}"

    def delay_for(self, attempt: int, requested: float | None = None) -> int:
        """The delay tier (ms) for a retry: the requested delay rounded up to a tier, else
        the tier for this attempt (0-based), the longest once attempts run past the list."""
        tiers = self.retry_delays_ms
        if requested is not None:
            want = int(requested * 1000)
            return next((t for t in tiers if t >= want), tiers[-1])
        return tiers[min(attempt, len(tiers) - 1)]

    # -- specs ---------------------------------------------------------------------------
    def exchanges(self) -> list[tuple[str, str]]:
        """(name, type) of every exchange."""
        return [
            (self.jobs_exchange, "direct"),
            (self.events_exchange, "topic"),
            (self.rpc_exchange, "direct"),
            (self.dlx, "direct"),
        ]

    def consumer_queue(
        self, name: str, bindings: tuple[tuple[str, str], ...] = (), **extra: Any
    ) -> list[QueueSpec]:
        """A consumer's quorum queue with its DLQ and its delay queues."""
        args = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dlx,
            "x-dead-letter-routing-key": name,
            "x-delivery-limit": DELIVERY_LIMIT,
        } | extra
        specs = [
            QueueSpec(name, args, bindings),
            QueueSpec(self.dlq(name), {"x-queue-type": "quorum"}, ((self.dlx, name),)),
        ]
        for ms in self.retry_delays_ms:
            specs.append(
                QueueSpec(
                    self.delay_queue(name, ms),
                    {
                        "x-queue-type": "quorum",
                        "x-message-ttl": ms,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": name,
                        # Expired messages move back to `name` at least once, never dropped.
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                )
            )
        return specs

    def job_queues(self, route: str) -> list[QueueSpec]:
        """Specs of a route's job queue (modem/bind/pool)."""
        return self.consumer_queue(
            self.job_queue(route), ((self.jobs_exchange, self.job_routing_key(route)),)
        )

    def inbound_queues(self) -> list[QueueSpec]:
        """Queues the inbound service consumes."""
        ev = self.events_exchange
        return [
            *self.consumer_queue(self.status_queue, ((ev, "status.#"),)),
            *self.consumer_queue(self.received_queue, ((ev, "inbound.#"),)),
            # Heartbeats are only worth their latest value: cap the backlog, no DLQ tiers.
            QueueSpec(
                self.heartbeat_queue,
                {"x-queue-type": "quorum", "x-max-length": 10_000, "x-message-ttl": 60_000},
                ((ev, "heartbeat.#"),),
            ),
        ]

    def rpc_queues(self, modem_id: str) -> list[QueueSpec]:
        """The request queue of one modem (requests expire: the caller has given up)."""
        return [
            QueueSpec(
                self.rpc_queue(modem_id),
                {"x-queue-type": "quorum", "x-message-ttl": 120_000},
                ((self.rpc_exchange, self.rpc_routing_key(modem_id)),),
            )
        ]

    def smpp_rpc_queues(self, bind_id: str) -> list[QueueSpec]:
        """The request queue of one SMPP bind (query_sm), like a modem's."""
        return [
            QueueSpec(
                f"{self.ns}.rpc.smpp.{bind_id}",
                {"x-queue-type": "quorum", "x-message-ttl": 120_000},
                ((self.rpc_exchange, f"smpp.{bind_id}"),),
            )
        ]

    @staticmethod
    def status_key(state: str) -> str:
        return f"status.{state}"

    @staticmethod
    def inbound_key(route: str) -> str:
        return "inbound." + route.replace(":", ".")

    CANCEL_KEY = "control.cancel"

    @staticmethod
    def heartbeat_key(route: str) -> str:
        return "heartbeat." + route.replace(":", ".")

    def all_queue_names(
        self, routes: list[str], modem_ids: list[str], bind_ids: list[str] | None = None
    ) -> list[str]:
        """Every queue this namespace may hold (used by tests and benches to clean up)."""
        specs = self.inbound_queues()
        for r in routes:
            specs += self.job_queues(r)
        for m in modem_ids:
            specs += self.rpc_queues(m)
        for b in bind_ids or []:
            specs += self.smpp_rpc_queues(b)
        return [s.name for s in specs]
