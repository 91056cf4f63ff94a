"""One robust AMQP connection per process, with topology declaration.

aio-pika's robust connection reconnects after the broker drops it and restores channels,
exchanges, queues and consumers declared through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from smsgw_shared.amqp.topology import QueueSpec, Topology
from smsgw_shared.backoff import Backoff, pause
from smsgw_shared.runtime import stop_tasks

log = logging.getLogger(__name__)


class BrokerUnavailable(ConnectionError):
    """RabbitMQ cannot be reached; the message says where and how to start it."""


async def _until_it_works(
    attempt: Callable[[], Awaitable[None]],
    errors: tuple[type[Exception], ...],
    first_delay: float,
    max_delay: float,
) -> None:
    """`attempt()` until it does not raise one of `errors`, backing off exponentially."""
    backoff = Backoff(first_delay, max(first_delay, max_delay))
    while True:
        try:
            await attempt()
            return
        except errors as exc:
            delay = backoff.next()
            log.warning("%s; retrying in %.1fs", exc, delay)
            await pause(delay)


def _hide_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class AmqpConnection:
    """Owns the connection; hands out confirm-mode channels; declares topology."""

    REDECLARE_EVERY = 5.0  # seconds, at least, between two declarations of everything again

    def __init__(self, url: str, topology: Topology, *, name: str = "smsgw") -> None:
        self.url = url
        self.topology = topology
        self.name = name
        self._conn: AbstractRobustConnection | None = None
        self._declared: set[str] = set()
        # Exchanges known to exist: declared here, or found by `missing_exchanges`.
        self._exchanges: set[str] = {""}
        self._lock = asyncio.Lock()
        # Set when the broker may no longer have this topology: after a reconnect (it may
        # have been reset, or be another node) or when one of its exchanges is found
        # missing. Once something was declared, a task declares it all again then.
        self.topology_lost = asyncio.Event()
        self._specs: dict[str, QueueSpec] = {}  # every queue declared, to declare again
        self._keeper: asyncio.Task[None] | None = None
        self._closed = False  # stop_redeclaring() was called: a later declare starts none

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._conn is None:
            raise BrokerUnavailable(f"not connected to RabbitMQ at {_hide_password(self.url)}")
        return self._conn

    @property
    def declared_names(self) -> set[str]:
        """Names of everything this connection declared (tests delete them afterwards)."""
        return set(self._declared)

    @property
    def is_connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed and self._conn.connected.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect (first attempt must succeed; later drops are reconnected)."""
        try:
            self._conn = await aio_pika.connect_robust(
                self.url,
                timeout=timeout,
                client_properties={"connection_name": self.name},
                reconnect_interval=1.0,
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            raise BrokerUnavailable(
                f"RabbitMQ is not reachable at {_hide_password(self.url)} ({exc!r}); "
                "start it with `rabbitmq-server -detached` or set SMSGW_AMQP_URL"
            ) from exc
        self._conn.reconnect_callbacks.add(self._on_reconnect)

    def _on_reconnect(self, *_: object) -> None:
        log.warning("reconnected to RabbitMQ: the topology will be declared again")
        self._lose_topology()

    def _lose_topology(self) -> None:
        """Trust nothing declared or found so far (queues too: their bindings go with a
        deleted exchange) and tell the owner to declare again."""
        self._declared.clear()
        self._exchanges = {""}
        self.topology_lost.set()

    def forget_exchanges(self, names: Iterable[str]) -> None:
        """A publish to these failed as if they did not exist (the broker closed the
        channel with NOT_FOUND): ask about them again; if one is ours, have the whole
        topology declared again."""
        names = set(names)
        self._exchanges -= names
        if names & {n for n, _ in self.topology.exchanges()}:
            log.warning("exchange(s) %s gone from the broker", ", ".join(sorted(names)))
            self._lose_topology()

    def unroutable(self, exchanges: Iterable[str]) -> None:
        """A publish to these came back unroutable. On the jobs or events exchange every
        routing key used has a queue declared for it, so its binding is gone (the exchange
        was deleted and declared again by another process): declare everything again. The
        RPC exchange is left out: a request no modem worker is bound for is unroutable by
        design."""
        ours = {self.topology.jobs_exchange, self.topology.events_exchange}
        if ours & set(exchanges):
            self._lose_topology()

    async def connect_forever(self, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        """Keep trying to connect until it works (for services that must start without
        the broker, like the API, whose outbox holds jobs meanwhile)."""
        await _until_it_works(self.connect, (BrokerUnavailable,), first_delay, max_delay)
        log.info("connected to RabbitMQ")

    async def declare_forever(
        self, queues: Iterable[QueueSpec] = (), first_delay: float = 1.0, max_delay: float = 30.0
    ) -> None:
        """`declare`, again until it works: until the exchanges exist a publish is refused,
        and one to a missing exchange closes its channel."""
        specs = list(queues)
        await _until_it_works(lambda: self.declare(specs), (Exception,), first_delay, max_delay)

    async def channel(self, *, confirms: bool = True, prefetch: int = 0) -> AbstractRobustChannel:
        """A new channel; confirms on and returns raising, so nothing is dropped silently."""
        ch = await self.connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
        if prefetch:
            await ch.set_qos(prefetch_count=prefetch)
        return ch  # type: ignore[return-value]

    async def declare(self, queues: Iterable[QueueSpec] = ()) -> None:
        """Declare every exchange and the given queues, idempotently. From the first
        declare on, all of it is declared again whenever `topology_lost` is set."""
        specs = list(queues)
        async with self._lock:
            ch = await self.connection.channel(publisher_confirms=False)
            try:
                for name, kind in self.topology.exchanges():
                    if name not in self._declared:
                        await ch.declare_exchange(name, aio_pika.ExchangeType(kind), durable=True)
                        self._declared.add(name)
                        self._exchanges.add(name)
                for spec in specs:
                    self._specs[spec.name] = spec
                    if spec.name in self._declared:
                        continue
                    q = await ch.declare_queue(
                        spec.name, durable=spec.durable, arguments=spec.arguments
                    )
                    for exchange, key in spec.bindings:
                        await q.bind(exchange, key)
                    self._declared.add(spec.name)
            finally:
                await ch.close()
            if self._keeper is None and not self._closed:
                self._keeper = asyncio.create_task(self._keep_declared(), name="amqp-redeclare")

    async def _keep_declared(self) -> None:
        """Declare everything again each time the broker may have lost it. Without this an
        API whose broker was reset would fail every publish from its outbox forever, and
        a worker's events would find no exchange."""
        loop = asyncio.get_running_loop()
        last = -self.REDECLARE_EVERY
        while True:
            await self.topology_lost.wait()
            # Each unroutable publish may ask for this: at most once every few seconds.
            await asyncio.sleep(max(0.0, last + self.REDECLARE_EVERY - loop.time()))
            self.topology_lost.clear()  # `_lose_topology` already forgot what was declared
            log.warning("declaring the broker topology again")
            await self.declare_forever(list(self._specs.values()))
            last = loop.time()
            log.info("broker topology declared again")

    async def missing_exchanges(self, names: Iterable[str]) -> set[str]:
        """Those of `names` that do not exist on the broker.

        A publish to a missing exchange makes RabbitMQ close the channel, and publishes
        pipelined behind it then close the whole connection (`CHANNEL_ERROR - expected
        'channel.open'`), so a publisher asks first. An exchange declared or found here is
        not asked about again; each unknown one costs a passive declare on its own channel.
        """
        missing: set[str] = set()
        for name in {n for n in names if n not in self._exchanges}:
            ch = await self.connection.channel(publisher_confirms=False)
            try:
                await ch.get_exchange(name, ensure=True)
                self._exchanges.add(name)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                missing.add(name)
            finally:
                if not ch.is_closed:
                    await ch.close()
        if missing & {n for n, _ in self.topology.exchanges()}:
            self._lose_topology()  # one of ours: declare everything again
        return missing

    async def stop_redeclaring(self) -> None:
        """No more declaring again (before deleting this topology on purpose)."""
        self._closed = True
        await stop_tasks([self._keeper])
        self._keeper = None

    async def close(self) -> None:
        await self.stop_redeclaring()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
