"""SP key rollover at the protocol level: the next SP key is published in the SP metadata beside the
current one, and an assertion encrypted to either key decrypts while both are held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from keyhall.core.certificates import SpKeyRollover
from keyhall.errors import SamlResponseError
from keyhall.protocols.saml.certificates import parse_certificate
from keyhall.protocols.saml.response import parse_saml_response
from keyhall.protocols.saml.sp_metadata import sp_metadata_xml
from keyhall.security.sp_keys import generate_sp_keypair
from tests.support import saml_responses as idp
from tests.support.saml_responses import ResponseSpec, Signer

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.make("idp.keyhall.test")


@pytest.fixture(scope="module")
def current() -> Signer:
    return Signer.make("sso.keyhall.test", slot=5)


@pytest.fixture(scope="module")
def upcoming() -> Signer:
    return Signer.make("sso.keyhall.test", slot=6)


def test_sp_metadata_publishes_the_next_key_for_signing_and_encryption() -> None:
    cert, _key = generate_sp_keypair("keyhall-sp-now", now=NOW)
    nxt, _next_key = generate_sp_keypair("keyhall-sp-next", now=NOW)
    xml = sp_metadata_xml(entity_id="https://sso.keyhall.test/sp", acs_url="https://sso.keyhall.test/acs",
                          name_id_formats=[], signing_cert_pem=cert, encryption_cert_pem=cert,
                          authn_requests_signed=True, valid_until=NOW + timedelta(days=7), next_cert_pem=nxt)
    root = etree.fromstring(xml)
    found: dict[str, list[str]] = {}
    for descriptor in root.iter(f"{{{MD}}}KeyDescriptor"):
        body = descriptor.findtext(f".//{{{DS}}}X509Certificate") or ""
        found.setdefault(descriptor.get("use") or "", []).append(body)

    def body(pem: str) -> str:
        return "".join(line for line in pem.strip().splitlines() if "-----" not in line)

    assert found == {"signing": [body(cert), body(nxt)], "encryption": [body(cert), body(nxt)]}
    assert parse_certificate(nxt, field="x").sha256_fingerprint != parse_certificate(cert, field="x").sha256_fingerprint


def test_an_assertion_encrypted_to_the_next_key_decrypts_during_the_overlap(
    signer: Signer, current: Signer, upcoming: Signer
) -> None:
    xml = idp.make_response(ResponseSpec(NOW, encrypt="aes256-gcm"), signer, sp_cert_pem=upcoming.cert_pem)
    with pytest.raises(SamlResponseError) as refused:  # the current key alone cannot open it
        parse_saml_response(idp.encode(xml), idp.expectations(NOW, signer, sp_private_key=current.key_pem))
    assert refused.value.reason == "decryption_failed"
    both = idp.expectations(NOW, signer, sp_private_key=current.key_pem, sp_other_private_keys=[upcoming.key_pem])
    assert parse_saml_response(idp.encode(xml), both).name_id == idp.NAME_ID
    to_current = idp.make_response(ResponseSpec(NOW, encrypt="aes128-cbc", sign="both"), signer,
                                   sp_cert_pem=current.cert_pem)
    assert parse_saml_response(idp.encode(to_current), both).name_id == idp.NAME_ID


def test_which_other_keys_decrypt_when() -> None:
    rollover = SpKeyRollover(next_certificate="C", next_private_key="NEXT", next_activates_at=NOW + timedelta(days=7),
                             previous_private_key="PREV", previous_until=NOW + timedelta(days=1))
    assert rollover.decryption_keys(NOW) == ("NEXT", "PREV")
    assert rollover.decryption_keys(NOW + timedelta(days=1)) == ("NEXT",)
    assert SpKeyRollover().decryption_keys(NOW) == ()
