"""Reading IdP metadata (keyhall.protocols.saml.metadata), saml-metadata-2.0-os §2.3, §2.4."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyhall.errors import SamlMetadataError
from keyhall.protocols.saml.certificates import parse_certificate
from keyhall.protocols.saml.metadata import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    IdpMetadata,
    parse_idp_metadata,
    parse_xs_datetime,
    sso_url_for,
)
from tests.support.saml_material import PERSISTENT_FORMAT, make_certificate, make_idp_metadata

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FIELD = "saml.metadata_xml"
IDP = "https://idp.example.com/saml"
SSO = "https://idp.example.com/saml/sso"
SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"


@pytest.fixture(scope="module")
def cert_pem() -> str:
    return make_certificate("idp.example.com", not_before=NOW - timedelta(days=1), days_valid=365)[0]


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _refused(document: bytes | str, **kwargs: object) -> SamlMetadataError:
    with pytest.raises(SamlMetadataError) as caught:
        parse_idp_metadata(document, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "saml_metadata_invalid"
    return caught.value


def test_valid_fixture_is_read_completely() -> None:
    metadata = parse_idp_metadata(_fixture("metadata-valid.xml"), now=NOW)

    valid_cert = parse_certificate((FIXTURES / "cert-valid.pem").read_text(), field="test")
    assert metadata == IdpMetadata(
        entity_id="https://idp.keyhall.test/saml/metadata",
        sso_urls={
            BINDING_HTTP_REDIRECT: "https://idp.keyhall.test/saml/sso",
            BINDING_HTTP_POST: "https://idp.keyhall.test/saml/sso",
        },
        slo_urls={
            BINDING_HTTP_REDIRECT: "https://idp.keyhall.test/saml/slo",
            BINDING_HTTP_POST: "https://idp.keyhall.test/saml/slo",
        },
        signing_certificates=(valid_cert,),
        encryption_certificates=(),
        name_id_formats=("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",),
        want_authn_requests_signed=False,
        valid_until=datetime(2046, 1, 1, tzinfo=UTC),
    )


def test_str_and_bytes_read_the_same() -> None:
    raw = _fixture("metadata-valid.xml")

    assert parse_idp_metadata(raw.decode(), now=NOW) == parse_idp_metadata(raw, now=NOW)


def test_expired_certificate_parses_and_reports_expiry() -> None:
    metadata = parse_idp_metadata(_fixture("metadata-expired-cert.xml"), now=NOW)

    (certificate,) = metadata.signing_certificates
    assert certificate.not_after == datetime(2021, 1, 1, tzinfo=UTC)
    assert certificate.is_expired(NOW) is True
    assert certificate.days_left(NOW) < 0


def test_aggregate_with_two_idps_needs_an_entity_id() -> None:
    error = _refused(_fixture("metadata-entities.xml"))

    assert error.message == (
        "metadata describes 2 identity providers (https://idp-a.keyhall.test/saml, "
        "https://idp-b.keyhall.test/saml); name the entity ID to use"
    )
    assert error.details["entity_ids"] == ["https://idp-a.keyhall.test/saml", "https://idp-b.keyhall.test/saml"]


def test_aggregate_entity_is_picked_by_entity_id() -> None:
    metadata = parse_idp_metadata(
        _fixture("metadata-entities.xml"), entity_id="https://idp-b.keyhall.test/saml", now=NOW
    )

    assert metadata.entity_id == "https://idp-b.keyhall.test/saml"
    assert metadata.sso_urls[BINDING_HTTP_REDIRECT] == "https://idp-b.keyhall.test/saml/sso"
    assert metadata.signing_certificates[0].subject == "CN=idp-b.keyhall.test"


def test_aggregate_without_the_named_entity_lists_what_it_has() -> None:
    error = _refused(_fixture("metadata-entities.xml"), entity_id="https://nope.example/")

    assert error.message == (
        "metadata has no entity 'https://nope.example/'; it describes: "
        "https://idp-a.keyhall.test/saml, https://idp-b.keyhall.test/saml"
    )


def test_aggregate_with_a_single_idp_picks_it(cert_pem: str) -> None:
    document = make_idp_metadata(IDP, SSO, cert_pem, entities=True)

    assert parse_idp_metadata(document, now=NOW).entity_id == IDP


def test_lone_entity_with_another_entity_id_names_both(cert_pem: str) -> None:
    error = _refused(make_idp_metadata(IDP, SSO, cert_pem), entity_id="https://other.example/")

    assert error.message == (
        "metadata is for entity 'https://idp.example.com/saml', not the configured entity ID 'https://other.example/'"
    )
    assert error.details["expected"] == "https://other.example/"
    assert error.details["found"] == IDP


def test_no_sso_fixture_names_the_missing_service() -> None:
    error = _refused(_fixture("metadata-no-sso.xml"))

    assert error.message == (
        "IDPSSODescriptor has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding (found: none)"
    )
    assert error.details["reason"] == "no_sso_service"


def test_soap_only_sso_is_refused_and_listed(cert_pem: str) -> None:
    error = _refused(make_idp_metadata(IDP, SSO, cert_pem, sso_bindings=[SOAP]))

    assert error.message.endswith(f"(found: {SOAP})")


def test_no_cert_fixture_names_the_missing_certificate() -> None:
    error = _refused(_fixture("metadata-no-cert.xml"))

    assert error.message.startswith("IDPSSODescriptor has no signing certificate")
    assert "KeyDescriptor" in error.message
    assert error.field == FIELD


def test_encryption_only_certificate_does_not_count_for_signing(cert_pem: str) -> None:
    error = _refused(make_idp_metadata(IDP, SSO, cert_pem, cert_use="encryption"))

    assert error.details["reason"] == "no_signing_certificate"


def test_key_descriptor_without_use_serves_both(cert_pem: str) -> None:
    metadata = parse_idp_metadata(make_idp_metadata(IDP, SSO, cert_pem, cert_use=None), now=NOW)

    assert metadata.signing_certificates == metadata.encryption_certificates
    assert len(metadata.signing_certificates) == 1


def test_separate_encryption_certificate_is_kept_apart(cert_pem: str) -> None:
    encryption_pem, _ = make_certificate("enc.example.com", not_before=NOW, days_valid=30, key_slot=1)

    metadata = parse_idp_metadata(make_idp_metadata(IDP, SSO, cert_pem, encryption_cert_pem=encryption_pem), now=NOW)

    assert [c.subject for c in metadata.signing_certificates] == ["CN=idp.example.com"]
    assert [c.subject for c in metadata.encryption_certificates] == ["CN=enc.example.com"]


def test_weak_certificate_in_metadata_is_a_metadata_error() -> None:
    weak_pem, _ = make_certificate("weak.example.com", key_type="rsa1024", not_before=NOW, days_valid=30)

    error = _refused(make_idp_metadata(IDP, SSO, weak_pem))

    assert error.message == (
        "KeyDescriptor #1 (use=signing) certificate: certificate's RSA key is 1024 bits; at least 2048 are required"
    )
    assert error.details["certificate_reason"] == "weak_key"


def test_comment_inside_the_certificate_body_does_not_split_it(cert_pem: str) -> None:
    document = make_idp_metadata(IDP, SSO, cert_pem)
    start = document.index("<ds:X509Certificate>") + len("<ds:X509Certificate>") + 40
    spliced = document[:start] + "<!-- rollover -->" + document[start:]

    metadata = parse_idp_metadata(spliced, now=NOW)

    assert metadata.signing_certificates[0].subject == "CN=idp.example.com"


def test_passed_valid_until_is_refused(cert_pem: str) -> None:
    error = _refused(make_idp_metadata(IDP, SSO, cert_pem, valid_until="2026-01-01T00:00:00Z"))

    assert error.message.startswith("metadata expired: validUntil 2026-01-01T00:00:00Z has passed")
    assert error.details["reason"] == "metadata_expired"


def test_passed_valid_until_on_the_aggregate_is_refused(cert_pem: str) -> None:
    document = make_idp_metadata(IDP, SSO, cert_pem, entities=True, entities_valid_until="2026-11-30T00:00:00Z")

    assert _refused(document).details["valid_until"] == "2026-11-30T00:00:00Z"


def test_valid_until_is_the_earliest_on_the_path(cert_pem: str) -> None:
    document = make_idp_metadata(
        IDP,
        SSO,
        cert_pem,
        entities=True,
        valid_until="2030-01-01T00:00:00+02:00",
        entities_valid_until="2031-01-01T00:00:00Z",
    )

    metadata = parse_idp_metadata(document, now=NOW)

    assert metadata.valid_until == datetime(2029, 12, 31, 22, 0, tzinfo=UTC)


def test_unreadable_valid_until_is_refused(cert_pem: str) -> None:
    error = _refused(make_idp_metadata(IDP, SSO, cert_pem, valid_until="next tuesday"))

    assert error.message == "validUntil 'next tuesday' on EntityDescriptor is not an xs:dateTime"


def test_saml2_must_be_in_protocol_support_enumeration(cert_pem: str) -> None:
    saml11 = "urn:oasis:names:tc:SAML:1.1:protocol"

    error = _refused(make_idp_metadata(IDP, SSO, cert_pem, protocol_support=saml11))

    assert error.message == (
        "IDPSSODescriptor's protocolSupportEnumeration does not list "
        f"urn:oasis:names:tc:SAML:2.0:protocol (found: {saml11})"
    )


def test_service_provider_metadata_is_recognised() -> None:
    document = (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example/">'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/>'
        "</md:EntityDescriptor>"
    )

    error = _refused(document)

    assert error.message == (
        "entity 'https://sp.example/' has no IDPSSODescriptor (this looks like service-provider metadata): "
        "identity-provider metadata is required"
    )


@pytest.mark.parametrize(
    "document",
    [
        "<html><body>Sign in</body></html>",
        '<EntityDescriptor entityID="https://idp.example/"/>',  # no SAML metadata namespace
    ],
)
def test_other_documents_are_not_metadata(document: str) -> None:
    error = _refused(document)

    assert error.message.startswith("root element is ")
    assert "expected an EntityDescriptor or EntitiesDescriptor" in error.message


def test_missing_entity_id_is_refused(cert_pem: str) -> None:
    document = make_idp_metadata(IDP, SSO, cert_pem).replace(f'entityID="{IDP}"', "")

    assert _refused(document).message == "EntityDescriptor has no entityID attribute"


@pytest.mark.parametrize("location", ["javascript:alert(1)", "/relative/sso", "ftp://idp.example/sso"])
def test_front_channel_location_must_be_an_http_url(cert_pem: str, location: str) -> None:
    error = _refused(make_idp_metadata(IDP, location, cert_pem))

    assert error.message == f"SingleSignOnService Location {location!r} is not an absolute http(s) URL"


def test_want_authn_requests_signed_is_read(cert_pem: str) -> None:
    signed = parse_idp_metadata(make_idp_metadata(IDP, SSO, cert_pem, want_authn_requests_signed=True), now=NOW)
    absent = parse_idp_metadata(make_idp_metadata(IDP, SSO, cert_pem, want_authn_requests_signed=None), now=NOW)

    assert signed.want_authn_requests_signed is True
    assert absent.want_authn_requests_signed is False


def test_unreadable_boolean_is_refused(cert_pem: str) -> None:
    document = make_idp_metadata(IDP, SSO, cert_pem).replace(
        'WantAuthnRequestsSigned="false"', 'WantAuthnRequestsSigned="yes"'
    )

    assert _refused(document).message == "WantAuthnRequestsSigned 'yes' is not an xs:boolean"


def test_name_id_formats_keep_order_without_duplicates(cert_pem: str) -> None:
    email = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    document = make_idp_metadata(IDP, SSO, cert_pem, name_id_formats=[PERSISTENT_FORMAT, email, PERSISTENT_FORMAT])

    assert parse_idp_metadata(document, now=NOW).name_id_formats == (PERSISTENT_FORMAT, email)


def test_xxe_fixture_is_refused_through_metadata() -> None:
    error = _refused(_fixture("metadata-xxe.xml"))

    assert error.details["reason"] == "dtd_forbidden"


def test_azure_ad_shaped_fixture() -> None:
    tenant = "5f1c7d3e-0a4b-4c2d-9e8f-1a2b3c4d5e6f"
    raw = _fixture("metadata-azure-ad.xml")
    assert raw.startswith(b"\xef\xbb\xbf")

    metadata = parse_idp_metadata(raw, now=NOW)

    assert metadata.entity_id == f"https://sts.windows.net/{tenant}/"
    saml2 = f"https://login.microsoftonline.com/{tenant}/saml2"
    assert metadata.sso_urls == {BINDING_HTTP_REDIRECT: saml2, BINDING_HTTP_POST: saml2}
    assert metadata.slo_urls == {BINDING_HTTP_REDIRECT: saml2}
    assert [c.not_after.year for c in metadata.signing_certificates] == [2029, 2027]
    assert metadata.name_id_formats == ()
    assert parse_idp_metadata(raw.decode("utf-8"), now=NOW) == metadata


def test_google_workspace_shaped_fixture() -> None:
    metadata = parse_idp_metadata(_fixture("metadata-google-workspace.xml"), now=NOW)

    assert metadata.entity_id == "https://accounts.google.com/o/saml2?idpid=C03k9xq7p"
    assert sso_url_for(metadata) == (
        BINDING_HTTP_REDIRECT,
        "https://accounts.google.com/o/saml2/idp?idpid=C03k9xq7p",
    )
    assert metadata.slo_urls == {}
    assert metadata.valid_until == datetime(2031, 1, 1, tzinfo=UTC)
    assert metadata.name_id_formats == ("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",)
    assert metadata.signing_certificates[0].key_type == "RSA-2048"


def test_sso_url_for_honours_preference(cert_pem: str) -> None:
    metadata = parse_idp_metadata(make_idp_metadata(IDP, SSO, cert_pem, sso_bindings=["HTTP-POST"]), now=NOW)

    assert sso_url_for(metadata) == (BINDING_HTTP_POST, SSO)
    assert sso_url_for(metadata, preferred=[BINDING_HTTP_POST]) == (BINDING_HTTP_POST, SSO)
    assert sso_url_for(metadata, preferred=["HTTP-Redirect"]) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T00:00:00", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T00:00:00.1234567Z", datetime(2030, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2030-01-01T01:00:00+01:00", datetime(2030, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_xs_datetime(value: str, expected: datetime) -> None:
    assert parse_xs_datetime(value) == expected


@pytest.mark.parametrize("value", ["2030-01-01", "2030-01-01 00:00:00Z", "tomorrow", "2030-13-01T00:00:00Z"])
def test_parse_xs_datetime_refuses_other_shapes(value: str) -> None:
    with pytest.raises(ValueError, match="not an xs:dateTime"):
        parse_xs_datetime(value)


def test_naive_now_is_a_programming_error(cert_pem: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_idp_metadata(make_idp_metadata(IDP, SSO, cert_pem), now=datetime(2026, 12, 1))  # naive on purpose
