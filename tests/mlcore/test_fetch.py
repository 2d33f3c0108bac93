"""Which addresses an action may fetch from, and how a deployment names the hosts it trusts (no packets sent)."""

from __future__ import annotations

import pytest

from mlcore.errors import MLCoreError
from mlcore.fetch import FetchError, is_internal, parse_allow_hosts


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "0.0.0.0",
        "::",
        "10.1.2.3",
        "172.31.255.1",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "224.0.0.251",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:c0a8:101::",
    ],
)
def test_internal_addresses(address):
    assert is_internal(address)


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"]
)
def test_public_addresses(address):
    assert not is_internal(address)


def test_allow_hosts_is_a_comma_list_of_host_and_optional_port():
    assert parse_allow_hosts(None) == parse_allow_hosts("") == frozenset()
    assert parse_allow_hosts(" 127.0.0.1:8080, Page.Test ,[::1]:9,") == {
        ("127.0.0.1", 8080),
        ("page.test", None),
        ("::1", 9),
    }
    assert parse_allow_hosts(["a.test:1"]) == {("a.test", 1)}


@pytest.mark.parametrize("value", ["http://a.test/", "a.test:port", "a.test/x", "user@a.test", 42])
def test_allow_hosts_refuses_what_is_not_host_and_port(value):
    with pytest.raises(FetchError, match="host\\[:port\\]") as caught:
        parse_allow_hosts(value)
    assert isinstance(caught.value, MLCoreError)
