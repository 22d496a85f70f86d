"""Inspecting a SAML IdP before storage (keyhall.idp.saml).

The URL path runs against a real HTTP server on 127.0.0.1 (``allow_insecure=True``), not a mock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from keyhall.errors import CertificateError, InvalidInput, SamlMetadataError, UnsafeURL
from keyhall.idp.saml import SamlInspection, inspect_saml_idp
from keyhall.protocols.saml.metadata import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from keyhall.security.outbound import OutboundPolicy
from tests.support.saml_material import make_certificate, pem_body

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = OutboundPolicy()
LOCAL = OutboundPolicy(allow_insecure=True, timeout=2.0)
IDP = "https://idp.keyhall.test/saml/metadata"


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cert_pem() -> str:
    return make_certificate("manual.example.com", not_before=NOW - timedelta(days=10), days_valid=100)[0]


# --- metadata pasted as XML -------------------------------------------------------------------


def test_metadata_xml_is_inspected() -> None:
    inspection = inspect_saml_idp(metadata_xml=_text("metadata-valid.xml"), policy=POLICY, now=NOW)

    assert inspection.source == "metadata_xml"
    assert inspection.idp_entity_id == IDP
    assert inspection.sso_url == "https://idp.keyhall.test/saml/sso"
    assert set(inspection.sso_urls) == {BINDING_HTTP_REDIRECT, BINDING_HTTP_POST}
    assert inspection.slo_url == "https://idp.keyhall.test/saml/slo"
    assert [c.subject for c in inspection.certificates] == ["CN=idp.keyhall.test"]
    assert inspection.metadata_valid_until == datetime(2046, 1, 1, tzinfo=UTC)


def test_as_discovered_is_json_and_reports_expiry() -> None:
    inspection = inspect_saml_idp(metadata_xml=_text("metadata-valid.xml"), policy=POLICY, now=NOW)

    discovered = inspection.as_discovered(NOW)

    assert json.loads(json.dumps(discovered)) == discovered
    assert discovered["source"] == "metadata_xml"
    assert discovered["certificate_expires_at"] == "2046-01-01T00:00:00Z"
    assert discovered["certificate_days_left"] == (datetime(2046, 1, 1, tzinfo=UTC) - NOW).days
    assert discovered["metadata_valid_until"] == "2046-01-01T00:00:00Z"
    assert discovered["certificates"][0]["expired"] is False
    assert discovered["name_id_formats"] == ["urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"]
    assert discovered["want_authn_requests_signed"] is False


def test_expired_certificate_is_reported_not_refused() -> None:
    inspection = inspect_saml_idp(metadata_xml=_text("metadata-expired-cert.xml"), policy=POLICY, now=NOW)

    discovered = inspection.as_discovered(NOW)
    assert discovered["certificate_expires_at"] == "2021-01-01T00:00:00Z"
    assert discovered["certificate_days_left"] < 0
    assert discovered["certificates"][0]["expired"] is True
    assert discovered["certificates"][0]["days_left"] < 0


def test_soonest_expiring_certificate_is_reported() -> None:
    inspection = inspect_saml_idp(metadata_xml=_text("metadata-azure-ad.xml"), policy=POLICY, now=NOW)

    discovered = inspection.as_discovered(NOW)
    assert len(discovered["certificates"]) == 2
    assert discovered["certificate_expires_at"] == "2027-01-01T00:00:00Z"
    assert discovered["certificate_days_left"] == 30


def test_explicit_fields_override_and_complement_metadata(cert_pem: str) -> None:
    inspection = inspect_saml_idp(
        metadata_xml=_text("metadata-valid.xml"),
        idp_entity_id=IDP,
        sso_url="https://idp.keyhall.test/custom/sso",
        slo_url="https://idp.keyhall.test/custom/slo",
        certificates=[cert_pem, (FIXTURES / "cert-valid.pem").read_text()],
        policy=POLICY,
        now=NOW,
    )

    assert inspection.sso_url == "https://idp.keyhall.test/custom/sso"
    assert inspection.slo_url == "https://idp.keyhall.test/custom/slo"
    assert inspection.sso_urls[BINDING_HTTP_REDIRECT] == "https://idp.keyhall.test/saml/sso"
    assert [c.subject for c in inspection.certificates] == ["CN=manual.example.com", "CN=idp.keyhall.test"]


def test_entity_id_other_than_the_metadata_names_both() -> None:
    with pytest.raises(SamlMetadataError) as caught:
        inspect_saml_idp(
            metadata_xml=_text("metadata-valid.xml"),
            idp_entity_id="https://elsewhere.example/",
            policy=POLICY,
            now=NOW,
        )

    assert IDP in caught.value.message
    assert "https://elsewhere.example/" in caught.value.message
    assert caught.value.field == "saml.metadata_xml"


def test_entity_id_picks_from_an_aggregate() -> None:
    inspection = inspect_saml_idp(
        metadata_xml=_text("metadata-entities.xml"),
        idp_entity_id="https://idp-a.keyhall.test/saml",
        policy=POLICY,
        now=NOW,
    )

    assert inspection.sso_url == "https://idp-a.keyhall.test/saml/sso"


def test_unusable_metadata_is_refused_with_its_field() -> None:
    with pytest.raises(SamlMetadataError, match="no SingleSignOnService") as caught:
        inspect_saml_idp(metadata_xml=_text("metadata-no-sso.xml"), policy=POLICY, now=NOW)

    assert caught.value.details["field"] == "saml.metadata_xml"


def test_both_metadata_sources_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"give saml\.metadata_url or saml\.metadata_xml, not both"):
        inspect_saml_idp(
            metadata_url="https://idp.example/metadata",
            metadata_xml=_text("metadata-valid.xml"),
            policy=POLICY,
            now=NOW,
        )


# --- manual configuration --------------------------------------------------------------------


def test_manual_configuration(cert_pem: str) -> None:
    inspection = inspect_saml_idp(
        metadata_xml="   ",
        idp_entity_id=" https://manual.example.com/idp ",
        sso_url="https://manual.example.com/sso",
        certificates=[pem_body(cert_pem)],
        policy=POLICY,
        now=NOW,
    )

    assert inspection == SamlInspection(
        idp_entity_id="https://manual.example.com/idp",
        sso_url="https://manual.example.com/sso",
        sso_urls={BINDING_HTTP_REDIRECT: "https://manual.example.com/sso"},
        slo_url=None,
        certificates=inspection.certificates,
        name_id_formats=(),
        want_authn_requests_signed=False,
        metadata_valid_until=None,
        source="manual",
    )
    assert inspection.as_discovered(NOW)["certificate_days_left"] == 90
    assert inspection.as_discovered(NOW)["metadata_valid_until"] is None


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"sso_url": "https://m.example/sso", "with_cert": True}, "saml.idp_entity_id"),
        ({"idp_entity_id": "urn:m", "with_cert": True}, "saml.sso_url"),
        ({"idp_entity_id": "urn:m", "sso_url": "https://m.example/sso"}, "saml.certificates"),
    ],
)
def test_manual_configuration_names_the_missing_field(cert_pem: str, given: dict[str, object], missing: str) -> None:
    certificates = [cert_pem] if given.pop("with_cert", False) else []

    with pytest.raises(SamlMetadataError) as caught:
        inspect_saml_idp(certificates=certificates, policy=POLICY, now=NOW, **given)  # type: ignore[arg-type]

    assert caught.value.field == missing
    assert caught.value.message.startswith(f"{missing} is required when no metadata is given")
    assert caught.value.details["missing"] == [missing]


def test_manual_configuration_lists_everything_missing() -> None:
    with pytest.raises(SamlMetadataError) as caught:
        inspect_saml_idp(policy=POLICY, now=NOW)

    assert caught.value.details["missing"] == ["saml.idp_entity_id", "saml.sso_url", "saml.certificates"]
    assert caught.value.field == "saml.idp_entity_id"


@pytest.mark.parametrize("field", ["sso_url", "slo_url"])
def test_urls_must_be_absolute_http(cert_pem: str, field: str) -> None:
    urls = {"sso_url": "https://m.example/sso", field: "ftp://m.example/x"}

    with pytest.raises(SamlMetadataError, match=f"saml.{field} must be an absolute http") as caught:
        inspect_saml_idp(idp_entity_id="urn:m", certificates=[cert_pem], policy=POLICY, now=NOW, **urls)

    assert caught.value.field == f"saml.{field}"


def test_bad_explicit_certificate_is_a_certificate_error() -> None:
    with pytest.raises(CertificateError, match=r"^saml\.certificates\[0\]: ") as caught:
        inspect_saml_idp(
            idp_entity_id="urn:m",
            sso_url="https://m.example/sso",
            certificates=["-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"],
            policy=POLICY,
            now=NOW,
        )

    assert caught.value.details["reason"] == "private_key"


# --- metadata fetched from a URL (real local HTTP server) ------------------------------------


class _Pages(BaseHTTPRequestHandler):
    pages: dict[str, tuple[str, bytes]] = {
        "/metadata": ("application/samlmetadata+xml", (FIXTURES / "metadata-valid.xml").read_bytes()),
        "/login": ("text/html; charset=utf-8", b"<!doctype html><html><body>Sign in</body></html>"),
    }

    def do_GET(self) -> None:
        content_type, body = self.pages.get(self.path, ("text/plain", b"not found"))
        self.send_response(200 if self.path in self.pages else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def idp_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_metadata_url_is_fetched_and_inspected(idp_server: str) -> None:
    inspection = inspect_saml_idp(metadata_url=f"{idp_server}/metadata", policy=LOCAL, now=NOW)

    assert inspection.source == "metadata_url"
    assert inspection.idp_entity_id == IDP
    assert inspection.sso_url == "https://idp.keyhall.test/saml/sso"
    assert inspection.as_discovered(NOW)["certificate_expires_at"] == "2046-01-01T00:00:00Z"


def test_metadata_url_answering_a_web_page_says_so(idp_server: str) -> None:
    with pytest.raises(SamlMetadataError) as caught:
        inspect_saml_idp(metadata_url=f"{idp_server}/login", policy=LOCAL, now=NOW)

    assert caught.value.message.startswith(
        "saml.metadata_url answered a web page (text/html; charset=utf-8), not SAML metadata"
    )
    assert caught.value.field == "saml.metadata_url"


def test_metadata_url_goes_through_the_ssrf_guard(idp_server: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        inspect_saml_idp(metadata_url=f"{idp_server}/metadata", policy=POLICY, now=NOW)

    assert caught.value.field == "saml.metadata_url"
