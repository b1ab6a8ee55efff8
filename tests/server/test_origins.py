"""Host and Origin rules over header values (server/origins.py); over a real socket:
test_access.py (Host and Origin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from masklog.server.origins import host_allowed, origin_allowed, parse_origin
from masklog.server.settings import Settings

LOCAL = ("127.0.0.1", 8000)  # the address and port a connection arrived on


def settings(**overrides: Any) -> Settings:
    return Settings(data=Path("unused"), **overrides)


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://Example.COM", ("http", "example.com", 80)),
        ("https://example.com", ("https", "example.com", 443)),
        ("wss://example.com:8443/path", ("wss", "example.com", 8443)),
        ("http://[::1]:8000", ("http", "[::1]", 8000)),
        (" http://localhost:8000 ", ("http", "localhost", 8000)),
        ("ftp://example.com", None),
        ("null", None),
        ("http://", None),
        ("http://example.com:99999", None),
    ],
)
def test_origins_are_parsed_with_default_ports(url: str, parsed: tuple[str, str, int] | None) -> None:
    assert parse_origin(url) == parsed


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "[::1]:8000"])
def test_loopback_names_on_the_arrival_port_are_local(host: str) -> None:
    assert host_allowed(host, LOCAL, settings()) == "local"


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example:8000",  # DNS rebinding: the attacker's name, resolved to us
        "127.0.0.1:9000",  # another port than the one the connection arrived on
        "127.0.0.1",  # port 80, but it arrived on 8000
        "127.0.0.1:notaport",
        "[::1",
    ],
)
def test_other_hosts_are_refused(host: str | None) -> None:
    assert host_allowed(host, LOCAL, settings()) is None


def test_the_bind_host_and_the_arrival_address_are_local() -> None:
    assert host_allowed("labels.lan:8000", LOCAL, settings(host="labels.lan")) == "local"
    assert host_allowed("10.0.0.5:8000", ("10.0.0.5", 8000), settings(host="0.0.0.0")) == "local"
    assert host_allowed("[fe80::1]:8000", ("fe80::1", 8000), settings(host="::")) == "local"
    assert host_allowed("10.0.0.5:8000", None, settings()) is None  # no arrival address known


def test_public_origins_name_the_server_on_their_own_port() -> None:
    public = settings(public_origins=("https://labels.example",))
    assert host_allowed("labels.example", LOCAL, public) == "public"
    assert host_allowed("labels.example:443", LOCAL, public) == "public"
    assert host_allowed("labels.example:8000", LOCAL, public) is None
    assert host_allowed("other.example", LOCAL, public) is None


def test_an_origin_must_be_this_server_over_http() -> None:
    plain = settings()
    assert origin_allowed("127.0.0.1:8000", "http://127.0.0.1:8000", LOCAL, plain)
    assert origin_allowed("localhost:8000", "http://localhost:8000", LOCAL, plain)
    assert not origin_allowed("127.0.0.1:8000", "https://127.0.0.1:8000", LOCAL, plain)  # no TLS here
    assert not origin_allowed("127.0.0.1:8000", "http://localhost:8000", LOCAL, plain)  # as Host names it
    assert not origin_allowed("127.0.0.1:8000", "http://evil.example", LOCAL, plain)
    assert not origin_allowed("127.0.0.1:8000", "null", LOCAL, plain)
    assert not origin_allowed("evil.example:8000", "http://evil.example:8000", LOCAL, plain)


def test_programs_without_an_origin_need_a_valid_host() -> None:
    assert origin_allowed("127.0.0.1:8000", None, LOCAL, settings())
    assert not origin_allowed("evil.example", None, LOCAL, settings())


def test_public_and_allowed_origins_are_accepted() -> None:
    public = settings(public_origins=("https://labels.example",))
    assert origin_allowed("labels.example", "https://labels.example", LOCAL, public)
    assert not origin_allowed("labels.example", "http://labels.example", LOCAL, public)
    assert not origin_allowed("other.example", "https://labels.example", LOCAL, public)
    allowed = settings(allowed_origins=("http://tools.example:3000",))
    assert origin_allowed("127.0.0.1:8000", "http://tools.example:3000", LOCAL, allowed)
    assert not origin_allowed("127.0.0.1:8000", "http://tools.example:3001", LOCAL, allowed)
