"""One robust AMQP connection per process, with topology declaration.

aio-pika's robust connection reconnects after the broker drops it and restores channels,
exchanges, queues and consumers declared through it.

Several broker URLs (a cluster: `SMSGW_AMQP_URL=amqp://…@n1/,amqp://…@n2/,…`): the first
that answers is used; when the connection is lost, or stays down, the next attempt goes to
the next URL in turn (aio-pika reads the connection's `url` at each attempt), so a service
follows the cluster to a node that is up. Every URL must carry the same credentials and
query options (only the first URL's query is read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from yarl import URL

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


def split_urls(url: str) -> list[str]:
    """`SMSGW_AMQP_URL`: one URL, or several separated by commas (a cluster)."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise BrokerUnavailable("no broker URL: set SMSGW_AMQP_URL")
    return urls


async def _answers(url: str, timeout: float = 1.0) -> bool:
    """Whether the URL's host accepts a TCP connection on its port now."""
    u = URL(url)
    default = 5671 if u.scheme == "amqps" else 5672
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(u.host or "127.0.0.1", u.port or default), timeout
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


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
    FAILOVER_EVERY = 2.0  # seconds down on one broker URL before the next attempt takes the next

    def __init__(self, url: str, topology: Topology, *, name: str = "smsgw") -> None:
        self.urls = split_urls(url)
        self.url = self.urls[0]  # the one in use (or being tried)
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
        self._failover: asyncio.Task[None] | None = None

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._conn is None:
            raise BrokerUnavailable(f"not connected to RabbitMQ at {_hide_password(self.url)}")
        return self._conn

    @property
    def declared_names(self) -> set[str]:
        """Names of everything declared since the topology was last known good (a
        reconnect or a vanished exchange forgets them, to declare them again)."""
        return set(self._declared)

    @property
    def queue_names(self) -> set[str]:
        """Every queue this connection ever declared, forgotten or not (what a test
        deletes afterwards)."""
        return set(self._specs)

    @property
    def is_connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed and self._conn.connected.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect to the first broker URL that answers (that attempt must succeed; later
        drops are reconnected, to the next URL in turn when there are several)."""
        failures = []
        for url in self.urls:
            try:
                conn = await aio_pika.connect_robust(
                    url,
                    timeout=timeout,
                    client_properties={"connection_name": self.name},
                    reconnect_interval=1.0,
                )
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
                failures.append(f"{_hide_password(url)} ({exc!r})")
                continue
            self._conn, self.url = conn, url
            break
        else:
            raise BrokerUnavailable(
                f"RabbitMQ is not reachable at {'; '.join(failures)}; "
                "start it with `rabbitmq-server -detached` or set SMSGW_AMQP_URL"
            )
        self._conn.reconnect_callbacks.add(self._on_reconnect)
        if len(self.urls) > 1:
            self._failover = asyncio.create_task(self._fail_over(), name="amqp-failover")

    async def _fail_over(self) -> None:
        """While the connection is down, point its next attempt at a node that is up: the
        URL in use keeps its turn while its port answers (up to FAILOVER_EVERY without a
        connection), else the next URL whose port answers does."""
        loop = asyncio.get_running_loop()
        switched = loop.time()
        while self._conn is not None and not self._conn.is_closed:
            await asyncio.sleep(self.FAILOVER_EVERY / 4)
            if self.is_connected:
                switched = loop.time()
                continue
            stuck = loop.time() - switched >= self.FAILOVER_EVERY
            if not stuck and await _answers(self.url):
                continue
            nxt = await self._next_reachable()
            if nxt != self.url and self._conn is not None:
                self.url = nxt
                # A public attribute of aio-pika's Connection, read by each attempt.
                cast(Any, self._conn).url = URL(nxt)
                log.warning("broker connection down: next attempt to %s", _hide_password(nxt))
            switched = loop.time()

    async def _next_reachable(self) -> str:
        """The first URL after the one in use whose port answers (else simply the next)."""
        i = self.urls.index(self.url)
        order = self.urls[i + 1 :] + self.urls[: i + 1]
        for url in order:
            if await _answers(url):
                return url
        return order[0]

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
        await stop_tasks([self._failover])
        self._failover = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
