"""The SSRF guard of outbound IdP requests: URL syntax, schemes, and resolved addresses.

No network: literal addresses and names from the hosts file (``localhost``) only; the
rebinding case replaces the resolver and is refused before any connection is tried.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from keyhall.errors import IdPValidationError, OutboundFetchError, UnsafeURL
from keyhall.security.addresses import non_public_reason
from keyhall.security.outbound import OutboundPolicy, check_url, fetch

SECURE = OutboundPolicy()
INSECURE = OutboundPolicy(allow_insecure=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://8.8.8.8/.well-known/openid-configuration",
        "https://[2606:4700:4700::1111]/jwks",
        "https://1.1.1.1:8443/realms/acme",
    ],
)
def test_https_to_public_addresses_is_allowed(url: str) -> None:
    check_url(url, SECURE, field="oidc.issuer")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://idp.example.com/x", "is not an absolute http(s) URL with a host"),
        ("file:///etc/passwd", "is not an absolute http(s) URL with a host"),
        ("/relative/path", "is not an absolute http(s) URL with a host"),
        ("https://", "is not an absolute http(s) URL with a host"),
        ("gopher://127.0.0.1:6379/_INFO", "is not an absolute http(s) URL with a host"),
        ("http://idp.example.com/x", "must use https"),
        ("http://8.8.8.8/x", "must use https"),
    ],
)
def test_bad_syntax_and_schemes_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url(url, SECURE, field="oidc.issuer")
    assert reason in caught.value.message
    assert caught.value.field == "oidc.issuer"
    assert caught.value.code == "unsafe_url"


def test_non_http_schemes_stay_refused_when_insecure() -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url("file:///etc/passwd", INSECURE, field="oidc.issuer")
    assert "is not an absolute http(s) URL" in caught.value.message


def test_credentials_in_the_url_are_refused_and_not_echoed() -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url("https://admin:hunter2@8.8.8.8/", SECURE, field="oidc.discovery_url")
    assert "must not carry a user name or password" in caught.value.message
    assert "hunter2" not in caught.value.message
    assert "hunter2" not in str(caught.value.details)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "a loopback"),
        ("127.1.2.3", "a loopback"),
        ("[::1]", "a loopback"),
        ("10.1.2.3", "a private"),
        ("172.16.0.1", "a private"),
        ("192.168.1.1", "a private"),
        ("[fd00::1]", "a private"),
        ("169.254.169.254", "a link-local"),
        ("[fe80::1]", "a link-local"),
        ("224.0.0.1", "a multicast"),
        ("[ff02::1]", "a multicast"),
        ("0.0.0.0", "an unspecified"),
        ("[::]", "an unspecified"),
        ("100.64.0.1", "a shared (carrier-grade NAT)"),
        ("240.0.0.1", "a private"),  # reserved; Python files 240/4 under is_private too
        ("192.0.2.10", "a private"),  # TEST-NET-1 documentation range
        ("[::ffff:127.0.0.1]", "a loopback (embedded IPv4)"),
        ("[::ffff:10.0.0.1]", "a private (embedded IPv4)"),
        ("[::ffff:169.254.169.254]", "a link-local (embedded IPv4)"),
        ("[64:ff9b::7f00:1]", "a loopback (embedded IPv4)"),
        ("[2002:7f00:1::]", "a loopback (embedded IPv4)"),
        ("2130706433", "a loopback"),  # 127.0.0.1 as one decimal number
        ("0x7f.1", "a loopback"),
    ],
)
def test_non_public_addresses_are_refused_without_allow_insecure(host: str, reason: str) -> None:
    url = f"https://{host}/.well-known/openid-configuration"
    with pytest.raises(UnsafeURL) as caught:
        check_url(url, SECURE, field="oidc.issuer")
    message = caught.value.message
    assert f"{reason} address" in message
    assert "only contacts identity providers on public addresses" in message
    assert "KEYHALL_ALLOW_INSECURE_IDP_URLS" in message
    assert caught.value.details["reason"] == reason


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/",
        "http://[::1]:8080/",
        "http://10.0.0.5/realms/x",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:9000/",
        "https://192.168.0.10/",
    ],
)
def test_allow_insecure_permits_http_and_non_public_addresses(url: str) -> None:
    check_url(url, INSECURE, field="oidc.issuer")


def test_names_that_resolve_to_loopback_are_refused() -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url("https://localhost/.well-known/openid-configuration", SECURE, field="oidc.issuer")
    assert "host localhost resolves to a non-public address" in caught.value.message
    assert "127.0.0.1" not in caught.value.message  # which address (or kind) is never told
    assert "loopback" not in caught.value.message


def test_unresolvable_host_is_a_fetch_error_with_the_host_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(OutboundFetchError) as caught:
        check_url("https://idp.invalid/", SECURE, field="oidc.issuer")
    assert caught.value.message == "could not resolve host idp.invalid: Name or service not known"


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """One private address among public ones is enough to refuse the host."""
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"idp.example.com": ["8.8.8.8", "10.0.0.7"]}))
    with pytest.raises(UnsafeURL) as caught:
        check_url("https://idp.example.com/", SECURE, field="oidc.issuer")
    assert "host idp.example.com resolves to a non-public address" in caught.value.message
    assert "10.0.0.7" not in caught.value.message
    assert "10.0.0.7" not in str(caught.value.details)


def test_dns_rebinding_is_caught_at_connect_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name looks public when checked, then points at loopback when connecting: refused
    before any connection is made, because the connection resolves and checks again itself."""
    answers = iter([["8.8.8.8"], ["127.0.0.1"]])
    seen: list[str] = []

    def rebinding(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        seen.append(host)
        return _resolver({host: next(answers)})(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(UnsafeURL) as caught:
        fetch("https://rebind.example.com/.well-known/openid-configuration", SECURE, field="oidc.issuer")
    assert seen == ["rebind.example.com", "rebind.example.com"]
    assert "rebind.example.com resolves to a non-public address" in caught.value.message
    assert "127.0.0.1" not in caught.value.message
    assert caught.value.field == "oidc.issuer"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("127.0.0.1", "a loopback"),
        ("100.127.255.255", "a shared (carrier-grade NAT)"),
        ("198.18.0.1", "a private"),
        ("2001:db8::1", "a private"),
    ],
)
def test_non_public_reason(address: str, expected: str | None) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) == expected


def test_errors_are_idp_validation_errors() -> None:
    with pytest.raises(IdPValidationError):
        check_url("http://idp.example.com/", SECURE)


def _resolver(table: dict[str, list[str]]) -> Any:
    def getaddrinfo(host: str, port: int, *_args: Any, **_kwargs: Any) -> list[tuple[Any, ...]]:
        results: list[tuple[Any, ...]] = []
        for address in table[host]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            results.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return results

    return getaddrinfo
