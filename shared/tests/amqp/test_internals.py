"""aiormq's private channel state, as `amqp/aiormq_internals.py` drives it: the installed
aiormq must be one it supports and still do what it relies on; these tests say what changed
when it does not. Also: the public-API path used on any other aiormq gives the same outcomes."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import aiormq
import pytest

from smsgw_shared.amqp import AmqpConnection, Publisher, aiormq_internals, frames

from . import test_frames

SHARED = Path(__file__).resolve().parents[2]


def test_installed_aiormq_is_a_supported_version() -> None:
    installed = version("aiormq")
    assert aiormq_internals.version_supported(installed), (
        f"aiormq {installed} is installed, but smsgw_shared/amqp/aiormq_internals.py supports "
        f"{','.join(aiormq_internals.SUPPORTED)}: read aiormq's channel.py (basic_publish, "
        "_confirm_delivery, _on_return_frame) against that module, then widen SUPPORTED and "
        "the pin in shared/pyproject.toml"
    )


def test_the_declared_range_is_the_supported_range() -> None:
    project = tomllib.loads((SHARED / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if re.match(r"aiormq\b", d)]
    assert pins, "shared/pyproject.toml must declare aiormq (amqp/ imports it)"
    assert pins[0].replace(" ", "") == "aiormq" + ",".join(aiormq_internals.SUPPORTED)


def test_aiormq_still_does_what_the_batch_publish_relies_on() -> None:
    found = aiormq_internals.problems()
    assert not found, "aiormq internals changed:\n" + "\n".join(found)


async def test_a_live_channel_has_the_state_used(amqp: AmqpConnection) -> None:
    pub = Publisher(amqp)
    channel = await test_frames._underlay(pub)
    assert aiormq_internals.channel_problems(channel) == []
    assert aiormq_internals.usable(channel)
    await pub.close()


@pytest.mark.parametrize(
    ("text", "ok"),
    [("7.2.4", True), ("7.2.9", True), ("7.2.3", False), ("7.3.0", False), ("8.0", False)],
)
def test_version_range(text: str, ok: bool) -> None:
    assert aiormq_internals.version_supported(text) is ok


def test_a_change_is_reported_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiormq_internals, "version", lambda _: "7.3.0")

    def _confirm_delivery(self: object, delivery_tag: int, frame: object) -> None:
        """A rewrite that keeps its confirmations elsewhere."""

    monkeypatch.setattr(aiormq.Channel, "_confirm_delivery", _confirm_delivery)
    found = aiormq_internals.problems()
    assert "aiormq 7.3.0 is not in the supported range >=7.2.4,<7.3" in found
    assert any("_confirm_delivery no longer does 'self.confirmations.pop" in p for p in found)


def test_a_channel_without_the_state_is_not_usable() -> None:
    class Other:
        pass

    assert aiormq_internals.channel_problems(Other()) == ["not an aiormq.Channel: Other"]
    assert not aiormq_internals.usable(Other())  # type: ignore[arg-type]


# -- the public-API path: the same outcomes when the internals cannot be used ----------------
@pytest.fixture
def public_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = frames.publish_one_by_one

    async def counted(*args: object) -> list[object]:
        calls.append(1)
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(aiormq_internals, "usable", lambda channel: False)
    monkeypatch.setattr(frames, "publish_one_by_one", counted)
    return calls


async def test_public_path_batch_arrives_whole_and_in_order(
    amqp: AmqpConnection, public_path: list[int]
) -> None:
    await test_frames.test_a_batch_arrives_whole_and_in_order(amqp)
    assert public_path


async def test_public_path_each_message_has_its_own_outcome(
    amqp: AmqpConnection, public_path: list[int]
) -> None:
    await test_frames.test_each_message_of_a_batch_has_its_own_outcome(amqp)
    assert public_path


async def test_public_path_channel_closed_by_the_broker(
    amqp: AmqpConnection, public_path: list[int]
) -> None:
    await test_frames.test_a_channel_the_broker_closes_fails_the_batch_instead_of_hanging(amqp)
    assert public_path
