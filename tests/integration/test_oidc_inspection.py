"""Inspecting OpenID providers: the real oidc-provider, and canned bad documents.

Everything a real provider can do is tested against ``oidc_idp`` (npm oidc-provider). The
static server only serves what no real provider would: non-JSON discovery, a JWKS that is
missing, oversized, slow or dripping bodies, redirect loops, and a TLS endpoint with a
certificate for a name.
"""

from __future__ import annotations

import datetime
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyhall.errors import DiscoveryError, OutboundFetchError, UnsafeURL
from keyhall.idp.oidc import inspect_oidc_provider
from keyhall.security.outbound import OutboundPolicy, fetch
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port
from tests.support.static_http import StaticHttpServer

pytestmark = pytest.mark.peers

INSECURE = OutboundPolicy(allow_insecure=True, timeout=5.0)
SECURE = OutboundPolicy()
WELL_KNOWN = "/.well-known/openid-configuration"


def provider_document(base_url: str, **changes: Any) -> bytes:
    doc: dict[str, Any] = {
        "issuer": base_url,
        "authorization_endpoint": f"{base_url}/auth",
        "token_endpoint": f"{base_url}/token",
        "jwks_uri": f"{base_url}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    doc.update(changes)
    return json.dumps({name: value for name, value in doc.items() if value is not None}).encode()


# --- the real provider ---------------------------------------------------------------------------


def test_real_provider_is_inspected(oidc_idp: OidcIdp) -> None:
    inspection = inspect_oidc_provider(issuer=oidc_idp.issuer, discovery_url=None, policy=INSECURE)
    metadata = inspection.metadata
    assert inspection.discovery_url == oidc_idp.discovery_url
    assert metadata.issuer == oidc_idp.issuer
    assert metadata.authorization_endpoint == f"{oidc_idp.base_url}/auth"
    assert metadata.token_endpoint == f"{oidc_idp.base_url}/token"
    assert metadata.userinfo_endpoint == f"{oidc_idp.base_url}/me"
    assert metadata.jwks_uri == oidc_idp.jwks_uri
    assert metadata.registration_endpoint == f"{oidc_idp.base_url}/reg"
    assert metadata.code_challenge_methods_supported == ("S256",)
    assert metadata.scopes_supported is not None
    assert {"openid", "email", "profile", "groups"} <= set(metadata.scopes_supported)
    assert inspection.jwks.key_count >= 1
    assert "RS256" in inspection.jwks.algs
    assert inspection.jwks.key_types == ("RSA",)


def test_discovered_block_is_json_with_lists_and_nulls(oidc_idp: OidcIdp) -> None:
    inspection = inspect_oidc_provider(issuer=oidc_idp.issuer, discovery_url=None, policy=INSECURE)
    discovered = json.loads(json.dumps(inspection.as_discovered()))
    assert discovered["discovery_url"] == oidc_idp.discovery_url
    assert discovered["issuer"] == oidc_idp.issuer
    assert discovered["token_endpoint"] == f"{oidc_idp.base_url}/token"
    assert discovered["end_session_endpoint"] == f"{oidc_idp.base_url}/session/end"
    assert discovered["code_challenge_methods_supported"] == ["S256"]
    assert "email" in discovered["claims_supported"]
    assert discovered["jwks"]["key_count"] == inspection.jwks.key_count
    assert discovered["jwks"]["kids"] == list(inspection.jwks.kids)
    assert discovered["jwks"]["algs"] == ["RS256"]
    assert set(discovered) == {
        "discovery_url", "issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
        "jwks_uri", "end_session_endpoint", "registration_endpoint", "scopes_supported",
        "response_types_supported", "grant_types_supported", "code_challenge_methods_supported",
        "token_endpoint_auth_methods_supported", "id_token_signing_alg_values_supported",
        "claims_supported", "jwks",
    }  # fmt: skip


def test_discovery_url_alone_takes_the_documents_issuer(oidc_idp: OidcIdp) -> None:
    inspection = inspect_oidc_provider(issuer=None, discovery_url=oidc_idp.discovery_url, policy=INSECURE)
    assert inspection.metadata.issuer == oidc_idp.issuer
    assert inspection.discovery_url == oidc_idp.discovery_url


def test_issuer_mismatch_names_both_issuers(oidc_idp_wrong_issuer: OidcIdp) -> None:
    reached_as = oidc_idp_wrong_issuer.base_url  # http://127.0.0.1:PORT
    assert oidc_idp_wrong_issuer.issuer == f"http://localhost:{oidc_idp_wrong_issuer.port}"
    with pytest.raises(DiscoveryError) as caught:
        inspect_oidc_provider(issuer=reached_as, discovery_url=None, policy=INSECURE)
    message = caught.value.message
    assert message.startswith("issuer mismatch")
    assert f'"{oidc_idp_wrong_issuer.issuer}"' in message
    assert f'"{reached_as}"' in message
    assert caught.value.field == "oidc.issuer"


def test_issuer_mismatch_through_a_discovery_url_blames_the_discovery_url(oidc_idp_wrong_issuer: OidcIdp) -> None:
    with pytest.raises(DiscoveryError) as caught:
        inspect_oidc_provider(
            issuer=oidc_idp_wrong_issuer.base_url,
            discovery_url=oidc_idp_wrong_issuer.discovery_url,
            policy=INSECURE,
        )
    assert "issuer mismatch" in caught.value.message
    assert caught.value.field == "oidc.discovery_url"


def test_registered_client_comes_back_with_credentials(oidc_idp: OidcIdp) -> None:
    client_id, secret = oidc_idp.register_client(["http://127.0.0.1:8000/sso/c1/oidc/callback"])
    assert client_id
    assert secret
    public_id, no_secret = oidc_idp.register_client(
        ["http://127.0.0.1:8000/sso/c2/oidc/callback"], token_endpoint_auth_method="none"
    )
    assert public_id != client_id
    assert no_secret is None


# --- refusals by policy --------------------------------------------------------------------------


def test_http_issuer_is_refused_without_allow_insecure(oidc_idp: OidcIdp) -> None:
    with pytest.raises(UnsafeURL) as caught:
        inspect_oidc_provider(issuer=oidc_idp.issuer, discovery_url=None, policy=SECURE)
    assert "must use https" in caught.value.message
    assert caught.value.field == "oidc.issuer"


def test_loopback_issuer_is_refused_without_allow_insecure(oidc_idp: OidcIdp) -> None:
    with pytest.raises(UnsafeURL) as caught:
        inspect_oidc_provider(issuer=f"https://localhost:{oidc_idp.port}", discovery_url=None, policy=SECURE)
    assert "host localhost resolves to a non-public address" in caught.value.message
    assert "127.0.0.1" not in caught.value.message
    assert caught.value.field == "oidc.issuer"


def test_loopback_discovery_url_is_refused_without_allow_insecure(oidc_idp: OidcIdp) -> None:
    with pytest.raises(UnsafeURL) as caught:
        inspect_oidc_provider(
            issuer=None, discovery_url=f"https://127.0.0.1:{oidc_idp.port}{WELL_KNOWN}", policy=SECURE
        )
    assert "host 127.0.0.1 is a loopback address" in caught.value.message
    assert caught.value.field == "oidc.discovery_url"


def test_neither_issuer_nor_discovery_url() -> None:
    with pytest.raises(DiscoveryError) as caught:
        inspect_oidc_provider(issuer=None, discovery_url=None, policy=INSECURE)
    assert caught.value.message == "an issuer or a discovery URL is required"
    assert caught.value.field == "oidc.issuer"


# --- unreachable or broken providers -------------------------------------------------------------


def test_closed_port_is_a_fetch_error_saying_connection_refused() -> None:
    port = free_port()
    with pytest.raises(OutboundFetchError) as caught:
        inspect_oidc_provider(issuer=f"http://127.0.0.1:{port}", discovery_url=None, policy=INSECURE)
    assert caught.value.message == f"could not connect to 127.0.0.1:{port}: connection refused"
    assert caught.value.field == "oidc.issuer"


def test_non_json_discovery_document(static_http: StaticHttpServer) -> None:
    url = static_http.route(WELL_KNOWN, content_type="text/html", body=b"<html><h1>Welcome</h1></html>")
    with pytest.raises(DiscoveryError) as caught:
        inspect_oidc_provider(issuer=None, discovery_url=url, policy=INSECURE)
    assert "the discovery document is not JSON" in caught.value.message
    assert "<html><h1>Welcome" in caught.value.message
    assert caught.value.field == "oidc.discovery_url"


def test_discovery_document_missing_token_endpoint(static_http: StaticHttpServer) -> None:
    static_http.route(WELL_KNOWN, body=provider_document(static_http.base_url, token_endpoint=None))
    with pytest.raises(DiscoveryError) as caught:
        inspect_oidc_provider(issuer=static_http.base_url, discovery_url=None, policy=INSECURE)
    assert 'the discovery document has no "token_endpoint"' in caught.value.message
    assert caught.value.field == "oidc.issuer"


def test_discovery_answering_404(static_http: StaticHttpServer) -> None:
    with pytest.raises(OutboundFetchError) as caught:
        inspect_oidc_provider(issuer=static_http.base_url, discovery_url=None, policy=INSECURE)
    assert caught.value.message == f"GET {static_http.url(WELL_KNOWN)} answered HTTP 404 Not Found"
    assert caught.value.details["status"] == 404
    assert caught.value.field == "oidc.issuer"


def test_jwks_uri_answering_404(static_http: StaticHttpServer) -> None:
    static_http.route(WELL_KNOWN, body=provider_document(static_http.base_url, jwks_uri=static_http.url("/gone")))
    with pytest.raises(OutboundFetchError) as caught:
        inspect_oidc_provider(issuer=static_http.base_url, discovery_url=None, policy=INSECURE)
    assert caught.value.message == f"GET {static_http.url('/gone')} answered HTTP 404 Not Found"
    assert caught.value.field == "oidc.jwks_uri"


def test_jwks_without_keys(static_http: StaticHttpServer) -> None:
    static_http.route(WELL_KNOWN, body=provider_document(static_http.base_url))
    static_http.route("/jwks", body=b'{"keys": []}')
    with pytest.raises(DiscoveryError) as caught:
        inspect_oidc_provider(issuer=static_http.base_url, discovery_url=None, policy=INSECURE)
    assert "the JWKS is empty" in caught.value.message
    assert caught.value.field == "oidc.jwks_uri"


def test_server_error_names_the_status(static_http: StaticHttpServer) -> None:
    url = static_http.route(WELL_KNOWN, status=503, content_type="text/plain", body=b"maintenance")
    with pytest.raises(OutboundFetchError) as caught:
        inspect_oidc_provider(issuer=None, discovery_url=url, policy=INSECURE)
    assert "answered HTTP 503 Service Unavailable" in caught.value.message


def test_oversized_body_is_refused_by_content_length(static_http: StaticHttpServer) -> None:
    url = static_http.route("/big", body=b" " * 2048 + b"{}")
    with pytest.raises(OutboundFetchError) as caught:
        fetch(url, OutboundPolicy(allow_insecure=True, max_bytes=1024), field="oidc.discovery_url")
    assert caught.value.message == f"the response from {url} is larger than the 1024-byte limit"
    assert caught.value.field == "oidc.discovery_url"


def test_oversized_streamed_body_is_cut_at_the_cap(static_http: StaticHttpServer) -> None:
    """No Content-Length: the body is counted while it streams."""
    url = static_http.route("/big", body=b"x" * 8192, drip=0.01, drip_chunks=8)
    with pytest.raises(OutboundFetchError) as caught:
        fetch(url, OutboundPolicy(allow_insecure=True, max_bytes=1024), field="oidc.discovery_url")
    assert "is larger than the 1024-byte limit" in caught.value.message


def test_oversized_discovery_document_fails_the_inspection(static_http: StaticHttpServer) -> None:
    padding = "x" * 4096
    static_http.route(WELL_KNOWN, body=provider_document(static_http.base_url, padding=padding))
    policy = OutboundPolicy(allow_insecure=True, max_bytes=1024)
    with pytest.raises(OutboundFetchError) as caught:
        inspect_oidc_provider(issuer=static_http.base_url, discovery_url=None, policy=policy)
    assert "1024-byte limit" in caught.value.message
    assert caught.value.field == "oidc.issuer"


def test_slow_answer_times_out(static_http: StaticHttpServer) -> None:
    url = static_http.route(WELL_KNOWN, body=provider_document(static_http.base_url), delay=3.0)
    with pytest.raises(OutboundFetchError) as caught:
        inspect_oidc_provider(issuer=None, discovery_url=url, policy=OutboundPolicy(allow_insecure=True, timeout=0.3))
    assert caught.value.message == f"GET {url} timed out: no answer within 0.3 s"
    assert caught.value.field == "oidc.discovery_url"


def test_dripping_body_hits_the_overall_deadline(static_http: StaticHttpServer) -> None:
    """Each piece arrives within the read timeout, but the whole takes too long."""
    url = static_http.route("/drip", body=b"x" * 40, drip=0.2, drip_chunks=20)
    with pytest.raises(OutboundFetchError) as caught:
        fetch(url, OutboundPolicy(allow_insecure=True, timeout=0.4), field="oidc.discovery_url")
    assert caught.value.message == f"GET {url} did not finish within 1.2 s"


def test_redirects_are_followed_and_the_final_url_reported(static_http: StaticHttpServer) -> None:
    static_http.route("/old", status=302, headers={"Location": "/new"})
    final = static_http.route("/new", body=b"{}")
    document = fetch(static_http.url("/old"), INSECURE, accept="application/json")
    assert document.url == final
    assert document.body == b"{}"
    assert document.content_type == "application/json"
    assert static_http.hits == ["/old", "/new"]


def test_redirect_loop_is_cut(static_http: StaticHttpServer) -> None:
    static_http.route("/a", status=302, headers={"Location": "/b"})
    static_http.route("/b", status=301, headers={"Location": "/a"})
    policy = OutboundPolicy(allow_insecure=True, max_redirects=3)
    with pytest.raises(OutboundFetchError) as caught:
        fetch(static_http.url("/a"), policy, field="oidc.discovery_url")
    assert caught.value.message.startswith(f"GET {static_http.url('/a')} was redirected more than 3 times")
    assert static_http.hits == ["/a", "/b", "/a", "/b"]


def test_redirect_to_a_forbidden_scheme_is_refused(static_http: StaticHttpServer) -> None:
    static_http.route("/a", status=307, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(UnsafeURL) as caught:
        fetch(static_http.url("/a"), INSECURE, field="oidc.discovery_url")
    assert "is not an absolute http(s) URL" in caught.value.message


def test_unexpected_content_encoding_is_refused(static_http: StaticHttpServer) -> None:
    url = static_http.route("/gz", body=b"\x1f\x8b\x08\x00", headers={"Content-Encoding": "gzip"})
    with pytest.raises(OutboundFetchError) as caught:
        fetch(url, INSECURE, field="oidc.discovery_url")
    assert "is gzip-encoded although only identity was accepted" in caught.value.message


# --- TLS: the checked address is used, the URL's host name is verified ----------------------------


@pytest.fixture
def localhost_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StaticHttpServer]:
    """An HTTPS static server whose certificate names only ``localhost``, trusted for this test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = StaticHttpServer(tls=context, host="localhost")
    try:
        yield server
    finally:
        server.stop()


def test_tls_verifies_the_url_host_name_while_connecting_to_the_checked_address(
    localhost_tls: StaticHttpServer,
) -> None:
    url = localhost_tls.route("/doc", body=b'{"ok": true}')
    document = fetch(url, INSECURE, field="oidc.discovery_url")
    assert document.body == b'{"ok": true}'


def test_tls_certificate_for_another_name_is_refused(localhost_tls: StaticHttpServer) -> None:
    url = f"https://127.0.0.1:{localhost_tls.port}/doc"
    localhost_tls.route("/doc", body=b"{}")
    with pytest.raises(OutboundFetchError) as caught:
        fetch(url, INSECURE, field="oidc.discovery_url")
    assert caught.value.message.startswith(f"GET {url} failed: TLS certificate verification failed")
    assert "mismatch" in caught.value.message
