"""Several broker URLs (a cluster): the first that answers is used, and a connection that
loses its node goes on through the next one. Two TCP relays in front of the real RabbitMQ
stand for two nodes: killing a relay drops its connections and refuses new ones, as a node
going down does."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

import pytest

from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher
from smsgw_shared.amqp.connection import BrokerUnavailable, split_urls
from smsgw_shared.messages import SendJob
from smsgw_shared.testing import free_port, wait_for
from smsgw_shared.testing.relay import TcpRelay, url_through


def job(mid: str) -> SendJob:
    return SendJob(message_id=mid, to="+79160001234", text="hi", route="modem:*")


def test_urls_are_split_on_commas() -> None:
    assert split_urls("amqp://a/, amqp://b/ ,") == ["amqp://a/", "amqp://b/"]
    with pytest.raises(BrokerUnavailable):
        split_urls(" , ")


async def test_the_first_url_that_answers_is_used(amqp: AmqpConnection, broker_url: str) -> None:
    dead = url_through(broker_url, free_port())  # nothing listens there
    conn = AmqpConnection(f"{dead},{broker_url}", amqp.topology, name="pytest-failover")
    await conn.connect(timeout=5)
    try:
        assert conn.url == broker_url and conn.is_connected
    finally:
        await conn.close()
    dead2 = url_through(broker_url, free_port())
    with pytest.raises(BrokerUnavailable) as refused:
        await AmqpConnection(f"{dead},{dead2}", amqp.topology).connect(timeout=5)
    for url in (dead, dead2):  # each URL tried, and said so
        assert str(urlparse(url).port) in refused.value.args[0]
    assert "guest:***@" in refused.value.args[0]  # no password in the message


async def test_a_lost_node_is_replaced_by_the_next(amqp: AmqpConnection, broker_url: str) -> None:
    u = urlparse(broker_url)
    relays = [TcpRelay(u.hostname or "127.0.0.1", u.port or 5672) for _ in range(2)]
    urls = [url_through(broker_url, await r.start()) for r in relays]
    conn = AmqpConnection(",".join(urls), amqp.topology, name="pytest-failover")
    conn.FAILOVER_EVERY = 0.5
    await conn.connect(timeout=5)
    t = amqp.topology
    try:
        await conn.declare(t.job_queues("modem:*"))
        pub = Publisher(conn)
        await pub.publish(Outgoing(t.jobs_exchange, t.job_routing_key("modem:*"), job("1")))
        assert conn.url == urls[0] and relays[1].connections == 0
        await relays[0].kill()

        async def on_the_second() -> bool:
            return conn.url == urls[1] and conn.is_connected

        await wait_for(on_the_second, timeout=30)
        # Published through the second node, the topology declared again over it.
        for attempt in range(100):
            try:
                await pub.publish(Outgoing(t.jobs_exchange, t.job_routing_key("modem:*"), job("2")))
                break
            except Exception:
                if attempt == 99:
                    raise
                await asyncio.sleep(0.1)
        assert relays[1].connections >= 1
        ch = await amqp.channel(confirms=False)
        q = await ch.declare_queue(t.job_queue("modem:*"), passive=True)
        bodies = []
        while (m := await q.get(no_ack=True, fail=False)) is not None:
            bodies.append(SendJob.model_validate_json(m.body).message_id)
        await ch.close()
        assert "1" in bodies and "2" in bodies
        await pub.close()
    finally:
        await conn.close()
        await relays[1].kill()
