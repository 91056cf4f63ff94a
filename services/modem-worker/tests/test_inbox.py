"""What a modem hands over while the broker is away is kept on local disk before it leaves
the SIM, is published once the broker is back, and what a dead worker left is published by
the next one.

The outage is real for the worker: it reaches RabbitMQ through a TCP relay that is killed
(connections dropped, new ones refused) and started again on the same port."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smsgw_modem.events import EventSink
from smsgw_modem.inbox import Inbox
from smsgw_modem.receiver import Receiver
from smsgw_modem.sim import Simulator
from smsgw_shared.amqp import AmqpConnection, Publisher
from smsgw_shared.config import Settings
from smsgw_shared.messages import utcnow
from smsgw_shared.sms import build_deliver_pdus
from smsgw_shared.testing import wait_for
from smsgw_shared.testing.relay import TcpRelay, url_through


def on_disk(state_dir: str) -> set[int]:
    """Entries pending in modem m1's inbox file, read without touching it."""
    path = Path(state_dir) / "modem-m1.inbox"
    pending: set[int] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            (pending.add if record["k"] == "in" else pending.discard)(record["n"])
    return pending


def through(settings: Settings, relay: TcpRelay) -> Settings:
    return settings.model_copy(update={"amqp_url": url_through(settings.amqp_url, relay.port)})


async def test_inbox_keeps_entries_until_done_across_reopen(tmp_path: Path) -> None:
    inbox = Inbox.for_modem(str(tmp_path), "m1")
    a = await inbox.add("07911326040000F0040B911346610089F60000208062917314080CC8329BFD06")
    b = await inbox.add("0011000B916407281553F80000AA0AE8329BFD4697D9EC37")
    await inbox.done(a)
    inbox.close()
    again = Inbox.for_modem(str(tmp_path), "m1")
    assert [n for n, _ in again.pending()] == [b]
    assert await again.add("00") > b  # numbers are never reused


@pytest.mark.parametrize("direct", [False, True])
async def test_sms_received_while_the_broker_is_away_is_kept_and_published_later(
    sim: Simulator,
    worker: Any,
    events: Any,
    mk_modem: Callable[..., Any],
    setup_modems: Any,
    broker_relay: TcpRelay,
    direct: bool,
) -> None:
    relay = broker_relay
    # Stored and indicated with +CMTI, or routed directly with +CMT (CNMI mt=2).
    init = ["AT+CNMI=2,2,0,1,0"] if direct else []
    settings = through(setup_modems(mk_modem(1, init_commands=init)), relay)
    await worker.start(settings)
    await events.wait_connected("modem:m1")
    await relay.kill()
    try:
        sim.device(1).inject("+79161112233", "sent while the broker was away")

        async def taken_from_the_sim() -> bool:
            return not sim.device(1).state.storage and bool(on_disk(settings.workers.state_dir))

        # Kept on disk and gone from the SIM although nothing could be published.
        await wait_for(taken_from_the_sim, 20)
        assert events.inbound() == []
    finally:
        await relay.start()
    part = (await events.wait_inbound(1, timeout=30))[0]
    assert part.text == "sent while the broker was away"

    async def inbox_empty() -> bool:
        return not on_disk(settings.workers.state_dir)

    await wait_for(inbox_empty, 20)
    await worker.stop()  # while the relay is up (it goes first at teardown)


async def test_what_a_dead_worker_left_in_its_inbox_is_published_by_the_next(
    amqp: AmqpConnection, events: Any, tmp_path: Path
) -> None:
    """The inbox file a worker left (it died while the broker was away) is published by
    the next worker's receiver, to the real broker, and emptied."""
    (pdu,) = build_deliver_pdus("left behind", "+79160000009", scts=utcnow())
    left = Inbox.for_modem(str(tmp_path), "m1")
    await left.add(pdu.hex)
    left.close()  # the process is gone; only the file remains
    publisher = Publisher(amqp)
    await amqp.declare()
    try:
        inbox = Inbox.for_modem(str(tmp_path), "m1")
        receiver = Receiver("m1", "modem:m1", EventSink(publisher, amqp.topology), inbox)
        assert await receiver.flush() == 1
        part = (await events.wait_inbound(1))[0]
        assert (part.text, part.sender, part.route) == ("left behind", "+79160000009", "modem:m1")
        assert inbox.pending() == [] and on_disk(str(tmp_path)) == set()
        inbox.close()
    finally:
        await publisher.close()
