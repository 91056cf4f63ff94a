"""`environment = "production"` refuses known default secrets and private webhooks on an
exposed API, naming each problem; development starts with anything."""

from __future__ import annotations

from typing import Any

import pytest

from smsgw_shared.config import ConfigError, Settings
from smsgw_shared.safety import (
    MIN_BOOTSTRAP_KEY_LENGTH,
    UnsafeConfiguration,
    check_production_safety,
    production_problems,
)

GOOD_KEY = "sgw_" + "k" * 40
SAFE: dict[str, Any] = {
    "environment": "production",
    "amqp_url": "amqp://smsgw:s3cr3t-broker-pw@rabbitmq:5672/",
    "database_url": "postgresql://smsgw:s3cr3t-db-pw@postgres:5432/smsgw",
    "bootstrap_api_key": GOOD_KEY,
    "api": {"host": "0.0.0.0"},
    "webhooks": {"allow_private": False},
}


def make(**changes: Any) -> Settings:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SAFE.items()}
    for key, value in changes.items():
        if "__" in key:
            section, field = key.split("__")
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value
    return Settings.model_validate(data)


def refused(settings: Settings) -> str:
    with pytest.raises(UnsafeConfiguration) as info:
        check_production_safety(settings)
    return str(info.value)


def test_safe_production_settings_start() -> None:
    s = make()
    assert production_problems(s) == []
    check_production_safety(s)


def test_without_bootstrap_key_is_fine() -> None:
    check_production_safety(make(bootstrap_api_key=None))


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672/",
        "amqp://127.0.0.1:5672/",  # no credentials: the client sends guest/guest
        "amqp://guest@rabbitmq/",
        "amqp://smsgw:s3cr3t@a:5672/,amqp://guest:guest@b:5672/",  # any URL of a cluster
    ],
)
def test_guest_broker_credentials_are_refused(url: str) -> None:
    msg = refused(make(amqp_url=url))
    assert "amqp_url" in msg and "guest" in msg


def test_broker_url_password_is_never_printed() -> None:
    msg = refused(make(amqp_url="amqp://guest:guest@h/", bootstrap_api_key="short-secret"))
    assert "short-secret" not in msg


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/smsgw",  # the default: no password
        "postgresql://postgres:@postgres:5432/smsgw",
        "postgresql://postgres:postgres@postgres:5432/smsgw",  # the image's example password
    ],
)
def test_database_without_a_real_password_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    msg = refused(make(database_url=url))
    assert "database_url" in msg and "password" in msg


def test_database_password_from_pgpassword_or_unix_socket_is_fine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    check_production_safety(make(database_url="postgresql://smsgw@/smsgw?host=/run/postgresql"))
    monkeypatch.setenv("PGPASSWORD", "from-the-environment")
    check_production_safety(make(database_url="postgresql://smsgw@db:5432/smsgw"))


def test_the_compose_default_key_is_refused() -> None:
    msg = refused(make(bootstrap_api_key="sgw_compose_change_me"))
    assert "bootstrap_api_key" in msg and "known" in msg


def test_a_short_bootstrap_key_is_refused() -> None:
    short = "x" * (MIN_BOOTSTRAP_KEY_LENGTH - 1)
    msg = refused(make(bootstrap_api_key=short))
    assert "bootstrap_api_key" in msg and str(MIN_BOOTSTRAP_KEY_LENGTH) in msg
    assert short not in msg
    check_production_safety(make(bootstrap_api_key="x" * MIN_BOOTSTRAP_KEY_LENGTH))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "api.example.com"])
def test_private_webhooks_with_an_exposed_api_are_refused(host: str) -> None:
    msg = refused(make(api__host=host, webhooks__allow_private=True))
    assert "webhooks.allow_private" in msg and host in msg


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_private_webhooks_with_a_loopback_api_are_fine(host: str) -> None:
    check_production_safety(make(api__host=host, webhooks__allow_private=True))


def test_every_problem_is_named_at_once() -> None:
    s = make(
        amqp_url="amqp://guest:guest@127.0.0.1/",
        database_url="postgresql://postgres@127.0.0.1/smsgw",
        bootstrap_api_key="sgw_compose_change_me",
        webhooks__allow_private=True,
    )
    msg = refused(s)
    assert len(production_problems(s)) == 4
    for key in ("amqp_url", "database_url", "bootstrap_api_key", "webhooks.allow_private"):
        assert key in msg
    assert 'environment = "development"' in msg  # says how to opt out on a private machine


def test_development_starts_with_the_defaults() -> None:
    s = Settings.model_validate(
        {"environment": "development", "webhooks": {"allow_private": True}, "api": {"host": "::"}}
    )
    check_production_safety(s)


def test_production_is_the_default_and_refuses_the_default_secrets() -> None:
    s = Settings.model_validate({})
    assert s.environment == "production"
    refused(s)


def test_the_error_is_a_config_error() -> None:
    """The command line prints a ConfigError as one message and exits 2."""
    assert issubclass(UnsafeConfiguration, ConfigError)
