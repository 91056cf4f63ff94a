"""Safe by default: with `environment = "production"` (the default) a service refuses to
start on settings anyone could guess or that expose more than intended.

`check_production_safety(settings)` is called by every service at start-up (the API's
`create_app`, the inbound service and both workers' `run`). It raises `UnsafeConfiguration`
(a `ConfigError`: the command line prints it and exits 2) naming every problem at once:

- the broker's `guest`/`guest` credentials (also what a URL without credentials sends);
- a database URL with no password, or the `postgres` example password (a password from
  `PGPASSWORD` or a Unix-socket connection is fine);
- a bootstrap API key that is known (the old compose default) or shorter than
  `MIN_BOOTSTRAP_KEY_LENGTH` characters;
- `webhooks.allow_private = true` with the API bound to an address other than loopback:
  anyone who can reach the API could then make it call internal services.

`environment = "development"` skips the check (`make run`, tests, a machine nobody else
can reach). Secrets are never part of the message.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import parse_qs, unquote, urlparse

from smsgw_shared.config import ConfigError, Settings

MIN_BOOTSTRAP_KEY_LENGTH = 24
# Secrets that appeared in shipped files: whoever read them knows them.
KNOWN_BOOTSTRAP_KEYS = frozenset({"sgw_compose_change_me"})
KNOWN_DATABASE_PASSWORDS = frozenset({"postgres", "password", "changeme", "change_me"})
KNOWN_BROKER_PASSWORDS = frozenset({"guest", "password", "changeme", "change_me"})

_OPT_OUT = (
    'Set your own secrets (README: "Before exposing it"; with docker compose: .env), '
    'or set environment = "development" '
    "(SMSGW_ENVIRONMENT=development) on a machine nobody else can reach."
)


class UnsafeConfiguration(ConfigError):
    """Production settings with known default secrets or an unsafe exposure."""


def _broker_problems(amqp_url: str) -> list[str]:
    problems = []
    for i, url in enumerate(u.strip() for u in amqp_url.split(",") if u.strip()):
        parts = urlparse(url)
        # aiormq sends guest/guest for a missing user or password.
        user = unquote(parts.username or "") or "guest"
        password = unquote(parts.password or "") or "guest"
        where = "amqp_url" if "," not in amqp_url else f"amqp_url (URL {i + 1})"
        if user == "guest" or password in KNOWN_BROKER_PASSWORDS:
            problems.append(
                f"{where}: uses RabbitMQ's default guest/guest credentials or a known "
                f"password (user {user!r} at {parts.hostname or '?'}); create a broker "
                "user with its own password"
            )
    return problems


def _database_problems(database_url: str) -> list[str]:
    parts = urlparse(database_url)
    host = parts.hostname or ""
    query_host = parse_qs(parts.query).get("host", [""])[0]
    if (not host and query_host.startswith("/")) or host.startswith("/"):
        return []  # Unix socket: the server's peer authentication applies
    password = unquote(parts.password or "")
    if not password and os.environ.get("PGPASSWORD"):
        return []
    if not password:
        return [
            f"database_url: has no password (user {parts.username or '?'!r} at {host or '?'}); "
            "give the database user a password and put it in the URL or PGPASSWORD"
        ]
    if password in KNOWN_DATABASE_PASSWORDS:
        return [
            f"database_url: uses a known example password (user {parts.username or '?'!r}); "
            "choose your own"
        ]
    return []


def _bootstrap_problems(key: str | None) -> list[str]:
    if key is None or key == "":
        return []
    if key in KNOWN_BOOTSTRAP_KEYS:
        return [
            "bootstrap_api_key: is a known default published with smsgw; "
            "generate one, e.g. `openssl rand -hex 24`"
        ]
    if len(key) < MIN_BOOTSTRAP_KEY_LENGTH:
        return [
            f"bootstrap_api_key: is {len(key)} characters, shorter than "
            f"{MIN_BOOTSTRAP_KEY_LENGTH}; generate one, e.g. `openssl rand -hex 24`"
        ]
    return []


def is_loopback(host: str) -> bool:
    """Whether `host` (an address to bind) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost, or "" (every address)


def production_problems(settings: Settings) -> list[str]:
    """What keeps these settings from running in production (empty: nothing)."""
    problems = _broker_problems(settings.amqp_url)
    problems += _database_problems(settings.database_url)
    problems += _bootstrap_problems(settings.bootstrap_api_key)
    if settings.webhooks.allow_private and not is_loopback(settings.api.host):
        problems.append(
            f"webhooks.allow_private: is true while the API listens on {settings.api.host!r} "
            "(not loopback): anyone who can reach the API could make it call internal "
            "services; set it to false"
        )
    return problems


def check_production_safety(settings: Settings) -> None:
    """Raise `UnsafeConfiguration` naming every problem, when in production."""
    if settings.environment != "production":
        return
    problems = production_problems(settings)
    if problems:
        lines = [f"refusing to start in production (environment = {settings.environment!r}):"]
        lines += [f"  {p}" for p in problems]
        lines.append(_OPT_OUT)
        raise UnsafeConfiguration("\n".join(lines))
