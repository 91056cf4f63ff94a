"""The webhook URL guard (SSRF): every non-global IPv4 and IPv6 range, the IPv6 forms that
carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo), and malformed hosts, which
are a clear refusal and never another exception."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw_shared.urlguard import UrlRefused, check_syntax, check_url, is_public

REFUSED_V4 = [
    "0.0.0.0",  # "this network" 0/8
    "0.1.2.3",
    "10.0.0.1",  # RFC 1918
    "10.255.255.255",
    "100.64.0.1",  # CGNAT shared address space 100.64/10 (RFC 6598)
    "100.127.255.254",
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "169.254.169.254",  # link-local (cloud metadata)
    "172.16.0.1",  # RFC 1918
    "172.31.255.255",
    "192.0.0.9",  # IETF protocol assignments 192.0.0/24
    "192.0.0.170",
    "192.0.2.1",  # TEST-NET-1
    "192.88.99.1",  # 6to4 relay anycast (deprecated)
    "192.168.1.1",  # RFC 1918
    "198.18.0.1",  # benchmarking 198.18/15
    "198.19.255.255",
    "198.51.100.7",  # TEST-NET-2
    "203.0.113.7",  # TEST-NET-3
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved 240/4
    "255.255.255.255",  # broadcast
]

PUBLIC_V4 = ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.32.0.1", "93.184.215.14"]

REFUSED_V6 = [
    "::",  # unspecified
    "::1",  # loopback
    "::7f00:1",  # IPv4-compatible (deprecated, RFC 4291 §2.5.5.1) of 127.0.0.1
    "::a00:1",  # IPv4-compatible of 10.0.0.1
    "::808:808",  # IPv4-compatible of a public address: the whole range is refused
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.1.2.3",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "::ffff:0:7f00:1",  # IPv4-translated (SIIT, RFC 2765) of 127.0.0.1
    "::ffff:0:808:808",
    "64:ff9b::7f00:1",  # NAT64 well-known prefix (RFC 6052) of 127.0.0.1
    "64:ff9b::a00:1",  # … of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # … of 169.254.169.254
    "64:ff9b::6440:1",  # … of 100.64.0.1
    "64:ff9b::c0a8:101",  # … of 192.168.1.1
    "64:ff9b:1::7f00:1",  # NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215)
    "64:ff9b:1::808:808",
    "100::1",  # discard-only
    "2001::1",  # Teredo 2001::/32
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:2::1",  # benchmarking
    "2001:10::1",  # ORCHID
    "2001:db8::1",  # documentation
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:808:808::1",  # 6to4 of a public address: relays are deprecated (RFC 7526)
    "3fff::1",  # documentation (RFC 9637)
    "5f00::1",  # SRv6 SIDs
    "fc00::1",  # unique local
    "fd12:3456:789a::1",
    "fe80::1",  # link-local
    "febf::1",
    "fec0::1",  # site-local (deprecated)
    "feff::1",
    "ff02::1",  # multicast
    "4000::1",  # outside the global unicast 2000::/3
    "e000::1",
]

PUBLIC_V6 = [
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4010:c0e::64",
    "::ffff:8.8.8.8",  # IPv4-mapped: judged by its IPv4 address
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8: what DNS64 gives IPv6-only hosts
]


def _url(address: str) -> str:
    return f"http://[{address}]:8080/hook" if ":" in address else f"http://{address}/hook"


@pytest.mark.parametrize("address", REFUSED_V4 + REFUSED_V6)
async def test_non_global_addresses_refused(address: str) -> None:
    assert not is_public(address)
    with pytest.raises(UrlRefused, match="non-public"):
        await check_url(_url(address), allow_private=False)
    await check_url(_url(address), allow_private=True)  # the dev setting lets them through


@pytest.mark.parametrize("address", PUBLIC_V4 + PUBLIC_V6)
async def test_global_addresses_accepted(address: str) -> None:
    assert is_public(address)
    await check_url(_url(address), allow_private=False)


MALFORMED = [
    "http://a..b/",  # empty label (the idna codec raised UnicodeError)
    "http://.example.com/",
    "http://example..com./",
    "http://" + "a" * 64 + ".com/",  # label over 63
    "http://" + ".".join(["a" * 63] * 4) + "/",  # host over 253
    "http://" + "é" * 300 + ".com/",
    "http://xn--/",  # IDN junk: empty punycode
    "http://xn--zz-/",
    "http://xn--a.com/",  # invalid punycode
    "http://xn--ls8h\u00ff.com/",
    "http://\u00ad/",  # maps to nothing
    "http://exa\u2028mple.com/",
    "http://exa mple.com/",
    "http://exa%41mple.com/",
    "http://ex\u0000ample.com/",
    "http://-example.com/",
    "http://example-.com/",
    "http://ex!ample.com/",
    "http://127.1/",  # inet_aton shorthands that getaddrinfo would take as 127.0.0.1
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://[::1%25eth0]/",  # zone ids
    "http://[fe80::1%25lo]/",
    "http://[zz]/",
    "http://host:99999/",
    "http:///path",
    "http://user:pw@8.8.8.8/",
    "ftp://8.8.8.8/",
    "javascript:alert(1)",
    "",
]


@pytest.mark.parametrize("url", MALFORMED)
async def test_malformed_urls_are_a_clear_refusal(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_syntax(url)
    for allow_private in (False, True):
        with pytest.raises(UrlRefused):
            await check_url(url, allow_private=allow_private)


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://Example.COM/x", "example.com", 443),
        ("http://example.com.:8080/x", "example.com", 8080),
        ("https://пример.испытание/hook", "xn--e1afmkfd.xn--80akhbyknj4f", 443),
        ("https://xn--e1afmkfd.xn--80akhbyknj4f/hook", "xn--e1afmkfd.xn--80akhbyknj4f", 443),
        ("http://my_app.example.com/", "my_app.example.com", 80),
        ("http://" + "a" * 63 + ".com/", "a" * 63 + ".com", 80),
        ("http://[2606:4700:4700:0::1111]/", "2606:4700:4700::1111", 80),
        ("http://8.8.8.8:81/", "8.8.8.8", 81),
    ],
)
def test_hosts_normalised(url: str, host: str, port: int) -> None:
    assert check_syntax(url) == (host, port)


@given(st.text(max_size=80))
def test_any_host_is_a_host_or_a_refusal(text: str) -> None:
    """Whatever the host part, the guard answers with an ASCII host name it can resolve
    (or an IP literal) or refuses: never another exception."""
    try:
        host, _ = check_syntax(f"http://{text}/hook")
    except UrlRefused:
        return
    assert host.isascii() and 0 < len(host) <= 253
    host.encode("idna")  # what getaddrinfo does with it


@given(st.text(max_size=80))
def test_any_url_is_a_url_or_a_refusal(text: str) -> None:
    with contextlib.suppress(UrlRefused):
        check_syntax(text)


async def test_temporary_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """At submit a status_callback whose name cannot be resolved right now (EAI_AGAIN) is
    let through (the resolver checks it at delivery); a webhook subscription is refused."""
    loop = asyncio.get_running_loop()

    async def again(*args: object, **kw: object) -> list[object]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(loop, "getaddrinfo", again)
    await check_url("https://hooks.example.com/x", False, unresolved_ok=True)
    with pytest.raises(UrlRefused, match="cannot resolve"):
        await check_url("https://hooks.example.com/x", False)


async def test_unknown_name_refused() -> None:
    for unresolved_ok in (False, True):
        with pytest.raises(UrlRefused, match="cannot resolve"):
            await check_url("https://nothing-here.invalid/x", False, unresolved_ok=unresolved_ok)
