"""SSRF guard: webhook URLs must not reach private, loopback or link-local addresses
(cloud metadata at 169.254.169.254, the broker, the database…) unless
`webhooks.allow_private` says so. Checked when a subscription is made and again, through
the resolver the HTTP client uses, at every delivery (DNS may change in between)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class UrlRefused(ValueError):
    """The URL may not be used for webhooks; the message says why."""


def is_public(address: str) -> bool:
    """Whether an IP address is globally routable unicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_syntax(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL without credentials; raises UrlRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("the URL must be http or https")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if parts.username or parts.password:
        raise UrlRefused("credentials in the URL are not allowed")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_address(address: str, allow_private: bool) -> None:
    """Raise UrlRefused when `address` is not public and private ones are not allowed."""
    if not allow_private and not is_public(address):
        raise UrlRefused(f"the URL resolves to a non-public address ({address})")


async def check_url(url: str, allow_private: bool) -> None:
    """Validate a webhook URL: syntax, then every address its host resolves to."""
    host, port = check_syntax(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlRefused(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    for info in infos:
        check_address(str(info[4][0]), allow_private)


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that drops non-public addresses, so the client can only connect
    to addresses that passed the check (no DNS rebinding between check and connect)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self.allow_private or is_public(r["host"])]
        if not allowed:
            raise UrlRefused(f"{host} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def literal_address(host: str) -> Any:
    """The IP address when `host` is an IP literal (aiohttp skips the resolver for those)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
