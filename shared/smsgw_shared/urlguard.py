"""SSRF guard: webhook URLs must not reach private, loopback, link-local or any other
non-global address (cloud metadata at 169.254.169.254, the broker, the database…) unless
`webhooks.allow_private` says so. Checked when a subscription is made or a message names a
`status_callback`, and again, through the resolver the HTTP client uses, at every delivery
(DNS may change in between).

An IPv6 address is public only inside the global unicast range 2000::/3 and outside every
special-purpose block of the IANA registries; the forms that carry an IPv4 address are
judged by it too: IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96) are public only when
their IPv4 address is, while IPv4-compatible (::/96, deprecated), IPv4-translated
(::ffff:0:0:0/96), NAT64 local-use (64:ff9b:1::/48), 6to4 (2002::/16) and Teredo
(2001::/32) are refused whatever they carry: a webhook receiver has no reason to use them,
and which host a relay or translator would reach in their name cannot be checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2000
MAX_HOST_LENGTH = 253  # RFC 1035 §2.3.4, without the trailing dot
MAX_LABEL_LENGTH = 63
RESOLVE_TIMEOUT = 5.0  # seconds for the DNS lookup of a URL being checked

# IANA IPv4 Special-Purpose Address Registry (and multicast, reserved, broadcast).
_V4_BLOCKED = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # shared address space, CGNAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata services)
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated, RFC 7526)
        "192.168.0.0/16",  # RFC 1918
        "192.175.48.0/24",  # direct delegation AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
    )
)

_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # judged by the IPv4 address
_V6_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: judged by the IPv4 address
# IANA IPv6 Special-Purpose Address Registry inside 2000::/3 and the other ranges named
# here for clarity (everything outside 2000::/3 but the two above is refused anyway).
_V6_BLOCKED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated, RFC 4291 §2.5.5.1)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT, RFC 2765)
        "64:ff9b:1::/48",  # NAT64 local-use (RFC 8215)
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID…
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (relays deprecated, RFC 7526)
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
# A last label like these makes getaddrinfo read the whole name as an IPv4 address in
# inet_aton's forms (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`); no TLD looks so.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_BAD_CHARACTERS = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


class UrlRefused(ValueError):
    """The URL may not be used for webhooks; the message says why."""


def _v4_public(ip: ipaddress.IPv4Address) -> bool:
    return not any(ip in net for net in _V4_BLOCKED) and ip.is_global


def _v6_public(ip: ipaddress.IPv6Address) -> bool:
    if ip in _V6_MAPPED or ip in _V6_NAT64:
        return _v4_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip not in _V6_GLOBAL_UNICAST or any(ip in net for net in _V6_BLOCKED):
        return False
    return not ip.is_private and not ip.is_multicast


def is_public(address: str | IPAddress) -> bool:
    """Whether an IP address is globally routable unicast (an IPv6 address that carries an
    IPv4 one: only if that one is too); a scoped (`%zone`) or malformed one is not."""
    if isinstance(address, str):
        if "%" in address:
            return False  # a zone id only means something on a local link
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
    else:
        ip = address
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_public(ip)
    return _v6_public(ip)


def normalize_host(host: str) -> str:
    """The host as the resolver gets it: an IP literal in its compressed form, or a DNS name
    in ASCII (IDNA), lower case, without a trailing dot; raises UrlRefused when it is
    neither (empty or over-long labels, characters a host name cannot have, punycode that
    does not decode, a numeric name that getaddrinfo would read as an IPv4 address)."""
    if "%" in host:
        raise UrlRefused("scoped IPv6 addresses (with a zone id) are not allowed")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    if _BAD_CHARACTERS.search(host):
        raise UrlRefused("the host contains spaces or control characters")
    name = host[:-1] if host.endswith(".") else host
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise UrlRefused(
            "not a valid host name (an empty or over-long label, or characters IDNA refuses)"
        ) from exc
    if not ascii_name or len(ascii_name) > MAX_HOST_LENGTH:
        raise UrlRefused(f"the host name is empty or longer than {MAX_HOST_LENGTH} characters")
    labels = ascii_name.split(".")
    for label in labels:
        if not 0 < len(label) <= MAX_LABEL_LENGTH or not _LABEL.fullmatch(label):
            raise UrlRefused(f"not a valid host name ({label!r})")
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
                decoded = label[4:].encode("ascii").decode("punycode")
            except UnicodeError as exc:
                raise UrlRefused(f"not a valid host name ({label!r}: bad punycode)") from exc
            if not decoded:
                raise UrlRefused(f"not a valid host name ({label!r}: bad punycode)")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise UrlRefused("a numeric host must be a dotted-quad IPv4 address")
    return ascii_name


def check_syntax(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL without credentials; raises UrlRefused. The host is
    normalised (`normalize_host`)."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _BAD_CHARACTERS.search(url):
        raise UrlRefused("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("the URL must be http or https")
    if not hostname:
        raise UrlRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("credentials in the URL are not allowed")
    host = normalize_host(hostname)
    return host, port or (443 if parts.scheme == "https" else 80)


def check_address(address: str, allow_private: bool) -> None:
    """Raise UrlRefused when `address` is not public and private ones are not allowed."""
    if not allow_private and not is_public(address):
        raise UrlRefused(f"the URL resolves to a non-public address ({address})")


def check_target(url: str, allow_private: bool) -> None:
    """What can be checked without DNS (before each delivery): the syntax, and the address
    when the host is an IP literal (the HTTP client connects to those without resolving)."""
    host, _ = check_syntax(url)
    literal = literal_address(host)
    if literal is not None and not allow_private and not is_public(literal):
        raise UrlRefused(f"the URL points to a non-public address ({literal})")


async def check_url(url: str, allow_private: bool, *, unresolved_ok: bool = False) -> None:
    """Validate a webhook URL: syntax, then every address its host resolves to.
    `unresolved_ok`: a temporary DNS failure (no answer in time, EAI_AGAIN) passes, as the
    resolver checks the addresses again at every delivery anyway (a name that does not
    exist is still refused)."""
    host, port = check_syntax(url)
    literal = literal_address(host)
    if literal is not None:
        check_address(literal.compressed, allow_private)
        return
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
            RESOLVE_TIMEOUT,
        )
    except TimeoutError as exc:
        if unresolved_ok:
            return
        raise UrlRefused(f"cannot resolve {host}: no answer in {RESOLVE_TIMEOUT:g} s") from exc
    except socket.gaierror as exc:
        if unresolved_ok and exc.errno == socket.EAI_AGAIN:
            return
        raise UrlRefused(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    except (OSError, UnicodeError) as exc:
        raise UrlRefused(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from exc
    if not infos:
        raise UrlRefused(f"cannot resolve {host}")
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
