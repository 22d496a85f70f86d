"""The development-mode test IdP's SAML side (pysaml2), without an HTTP server: it reads an
AuthnRequest Keyhall built, answers only Keyhall's own ACS URLs, and signs the response and the
assertion RSA-SHA256 with SHA-256 digests (never SHA-1), which Keyhall's own SAML response
parser accepts with the IdP's certificate from its metadata."""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keyhall.dev.people import PEOPLE
from keyhall.dev.saml_idp import DevSamlIdp, SamlRefused, xmlsec_available
from keyhall.protocols.saml.authn_request import build_authn_request
from keyhall.protocols.saml.metadata import parse_idp_metadata
from keyhall.protocols.saml.response import SamlExpectations, parse_saml_response
from tests.support.peers import peer_unavailable

PUBLIC = "http://127.0.0.1:8000"
SP = f"{PUBLIC}/sso/c1/saml/metadata"
ACS = f"{PUBLIC}/sso/c1/saml/acs"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> DevSamlIdp:
    if not xmlsec_available():
        peer_unavailable("the xmlsec1 program is missing (Debian package xmlsec1; run `make system-deps`)")
    return DevSamlIdp(PUBLIC, f"{PUBLIC}/_dev/idp", Path(tmp_path_factory.mktemp("dev-saml")))


def redirect_encoded(xml: str) -> str:
    deflate = zlib.compressobj(wbits=-15)
    return base64.b64encode(deflate.compress(xml.encode()) + deflate.flush()).decode()


def authn_request(idp: DevSamlIdp, acs: str = ACS) -> tuple[str, str]:
    built = build_authn_request(sp_entity_id=SP, acs_url=acs, destination=idp.sso_url, now=datetime.now(UTC),
                                name_id_format=None, force_authn=False)
    return built.id, redirect_encoded(built.xml.decode())


def test_a_request_from_keyhall_gets_a_response_keyhall_accepts(idp: DevSamlIdp) -> None:
    request_id, encoded = authn_request(idp)
    read = idp.read(encoded, "redirect")
    assert (read.id, read.sp_entity_id, read.acs_url) == (request_id, SP, ACS)
    answer = idp.respond(read, PEOPLE[1], "relay-1")
    assert answer.action == ACS
    assert answer.fields["RelayState"] == "relay-1"
    xml = base64.b64decode(answer.fields["SAMLResponse"]).decode()
    assert xml.count("xmldsig-more#rsa-sha256") == 2  # the response and the assertion
    assert xml.count("xmlenc#sha256") == 2
    assert "xmldsig#sha1" not in xml
    assert "rsa-sha1" not in xml

    metadata = parse_idp_metadata(idp.metadata_xml(), field="saml.metadata_xml", entity_id=None,
                                  now=datetime.now(UTC))
    assert metadata.entity_id == idp.entity_id
    assertion = parse_saml_response(answer.fields["SAMLResponse"], SamlExpectations(
        idp_entity_id=idp.entity_id, certificates=[c.pem for c in metadata.signing_certificates],
        sp_entity_id=SP, acs_url=ACS, request_id=request_id, now=datetime.now(UTC)))
    assert assertion.name_id == PEOPLE[1].email
    assert assertion.attributes["urn:mace:dir:attribute-def:givenName"] == [PEOPLE[1].given_name]


@pytest.mark.parametrize("acs", ["https://attacker.example/acs", f"{PUBLIC}/_dev/app/callback",
                                 f"{PUBLIC}/sso/c1/saml/acs?next=https://attacker.example"])
def test_only_keyhalls_own_acs_urls_are_answered(idp: DevSamlIdp, acs: str) -> None:
    _, encoded = authn_request(idp, acs)
    with pytest.raises(SamlRefused, match="AssertionConsumerServiceURL"):
        idp.read(encoded, "redirect")


@pytest.mark.parametrize("encoded", ["", "bm90IHhtbA==", "%%%"])
def test_a_request_that_is_not_one_is_refused(idp: DevSamlIdp, encoded: str) -> None:
    with pytest.raises(SamlRefused, match="SAMLRequest"):
        idp.read(encoded, "redirect")


def test_the_keys_stay_in_the_data_directory(idp: DevSamlIdp, tmp_path: Path) -> None:
    again = DevSamlIdp(PUBLIC, f"{PUBLIC}/_dev/idp", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev-idp-saml.crt", "dev-idp-saml.key"]
    assert (tmp_path / "dev-idp-saml.key").stat().st_mode & 0o077 == 0
    assert DevSamlIdp(PUBLIC, f"{PUBLIC}/_dev/idp", tmp_path).metadata_xml() == again.metadata_xml()


def test_it_learns_a_bounded_number_of_service_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = DevSamlIdp(PUBLIC, f"{PUBLIC}/_dev/idp", tmp_path)
    monkeypatch.setattr("keyhall.dev.saml_idp.MAX_SERVICE_PROVIDERS", 1)
    fresh.read(authn_request(fresh)[1], "redirect")
    fresh.read(authn_request(fresh)[1], "redirect")  # the same one again: still answered
    with pytest.raises(SamlRefused, match="at most 1 service providers"):
        fresh.read(authn_request(fresh, f"{PUBLIC}/sso/c2/saml/acs")[1], "redirect")
