"""SAML Single Logout messages (protocols.saml.logout): real signatures over real XML, by both
bindings, and every refusal the SLO endpoint relies on."""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from lxml import etree

from keyhall.errors import SamlResponseError
from keyhall.protocols.saml.logout import (
    STATUS_SUCCESS,
    LogoutExpectations,
    build_logout_request,
    build_logout_response,
    parse_logout_request,
    parse_logout_response,
    post_binding_page,
    post_message_xml,
    read_redirect_query,
    redirect_binding_url,
)
from keyhall.protocols.saml.sp_metadata import sp_metadata_xml
from tests.support.saml_responses import Signer, sign

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
IDP = "urn:test:idp"
SP = "urn:keyhall:test-sp"
SLO = "https://keyhall.test/sso/conn-1/saml/slo"
IDP_SLO = "https://idp.test/saml/slo"
NAME = "alice@example.com"


@pytest.fixture(scope="module")
def idp() -> Signer:
    return Signer.make("idp.keyhall.test")


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return Signer.make("stranger.test", slot=1)


def expect(idp: Signer, **overrides: object) -> LogoutExpectations:
    values: dict[str, object] = {"idp_entity_id": IDP, "slo_url": SLO, "certificates": [idp.cert_pem], "now": NOW}
    values.update(overrides)
    return LogoutExpectations(**values)  # type: ignore[arg-type]


def idp_request(*, issuer: str = IDP, destination: str = SLO, issued: datetime = NOW,
                not_on_or_after: timedelta = timedelta(minutes=5), session_index: str | None = "idx-1") -> bytes:
    """A LogoutRequest as an IdP writes it (unsigned XML)."""
    _id, xml = build_logout_request(issuer=issuer, destination=destination, name_id=NAME,
                                    name_id_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                                    now=issued, session_index=session_index, not_on_or_after=not_on_or_after)
    return xml


def post_signed(xml: bytes, signer: Signer) -> bytes:
    root = etree.fromstring(xml)
    sign(root, signer)
    return etree.tostring(root)


def query_of(url: str) -> str:
    return urlsplit(url).query


def redirect_signed(xml: bytes, signer: Signer | None, relay: str | None = "rs-1") -> str:
    return query_of(redirect_binding_url(IDP_SLO, "SAMLRequest", xml, relay,
                                         signing_key_pem=signer.key_pem if signer else None))


def refused(reason: str, call: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(SamlResponseError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.reason == reason, caught.value.message


# -- accepted --------------------------------------------------------------------------------------------

def test_post_binding_request_signed_by_the_idp_is_accepted(idp: Signer) -> None:
    xml = post_signed(idp_request(), idp)
    encoded = base64.b64encode(xml).decode()
    request = parse_logout_request(post_message_xml(encoded, "SAMLRequest"), expect(idp))
    assert request.name_id == NAME
    assert request.session_indexes == ("idx-1",)
    assert request.id.startswith("_")
    assert request.usable_until <= NOW + timedelta(minutes=6)


def test_redirect_binding_request_with_query_signature_is_accepted(idp: Signer) -> None:
    seen = read_redirect_query(redirect_signed(idp_request(), idp), "SAMLRequest", expect(idp))
    assert seen.signed
    assert seen.relay_state == "rs-1"
    assert parse_logout_request(seen.xml, expect(idp), query_signed=True).name_id == NAME


def test_redirect_signature_without_relay_state_and_ec_key() -> None:
    ec_idp = Signer.make("ec-idp.test", key_type="ec256")
    seen = read_redirect_query(redirect_signed(idp_request(), ec_idp, relay=None), "SAMLRequest", expect(ec_idp))
    assert seen.signed
    assert seen.relay_state is None


# -- refused ---------------------------------------------------------------------------------------------

def test_unsigned_post_request_is_refused(idp: Signer) -> None:
    refused("unsigned", parse_logout_request, idp_request(), expect(idp))


def test_unsigned_redirect_request_is_refused(idp: Signer) -> None:
    seen = read_redirect_query(redirect_signed(idp_request(), None), "SAMLRequest", expect(idp))
    assert not seen.signed
    refused("unsigned", parse_logout_request, seen.xml, expect(idp), query_signed=seen.signed)


def test_request_signed_by_another_key_is_refused(idp: Signer, stranger: Signer) -> None:
    refused("untrusted_certificate", parse_logout_request, post_signed(idp_request(), stranger), expect(idp))
    refused("bad_signature", read_redirect_query, redirect_signed(idp_request(), stranger), "SAMLRequest", expect(idp))


def test_tampered_redirect_query_is_refused(idp: Signer) -> None:
    query = redirect_signed(idp_request(), idp)
    refused("bad_signature", read_redirect_query, query.replace("RelayState=rs-1", "RelayState=rs-2"),
            "SAMLRequest", expect(idp))
    other = redirect_signed(idp_request(session_index="idx-2"), None)
    swapped = other.split("&")[0] + "&" + "&".join(query.split("&")[1:])  # another request, the old signature
    refused("bad_signature", read_redirect_query, swapped, "SAMLRequest", expect(idp))


def test_tampered_post_request_is_refused(idp: Signer) -> None:
    xml = post_signed(idp_request(), idp).replace(NAME.encode(), b"admin@example.com")
    refused("bad_signature", parse_logout_request, xml, expect(idp))


def test_sha1_query_signature_is_refused(idp: Signer) -> None:
    query = redirect_signed(idp_request(), idp)
    sha1 = quote("http://www.w3.org/2000/09/xmldsig#rsa-sha1", safe="")
    fields = dict(part.split("=", 1) for part in query.split("&"))
    fields["SigAlg"] = sha1
    refused("sha1_refused", read_redirect_query, "&".join(f"{k}={v}" for k, v in fields.items()), "SAMLRequest",
            expect(idp))


def test_wrong_issuer_is_refused(idp: Signer) -> None:
    refused("wrong_issuer", parse_logout_request, post_signed(idp_request(issuer="urn:other"), idp), expect(idp))


def test_wrong_destination_is_refused(idp: Signer) -> None:
    xml = post_signed(idp_request(destination="https://elsewhere.test/slo"), idp)
    refused("wrong_destination", parse_logout_request, xml, expect(idp))


def test_expired_request_is_refused(idp: Signer) -> None:
    xml = post_signed(idp_request(issued=NOW - timedelta(minutes=3), not_on_or_after=timedelta(minutes=1)), idp)
    refused("expired", parse_logout_request, xml, expect(idp))
    old = post_signed(idp_request(issued=NOW - timedelta(hours=1), not_on_or_after=timedelta(days=1)), idp)
    refused("expired", parse_logout_request, old, expect(idp))


def test_not_a_logout_request_and_a_dtd_are_refused(idp: Signer) -> None:
    refused("malformed", parse_logout_request, b"<samlp:AuthnRequest xmlns:samlp='urn:oasis:names:tc:SAML:2.0:"
            b"protocol' ID='_1' Version='2.0'/>", expect(idp))
    refused("dtd_forbidden", parse_logout_request, b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>", expect(idp))
    refused("malformed", read_redirect_query, "SAMLRequest=%%%", "SAMLRequest", expect(idp))
    refused("malformed", read_redirect_query, "SAMLRequest=a&SAMLRequest=b", "SAMLRequest", expect(idp))


# -- Keyhall's messages ----------------------------------------------------------------------------------

def test_logout_response_round_trip_and_in_response_to(idp: Signer) -> None:
    _id, xml = build_logout_response(in_response_to="_req-1", issuer=IDP, destination=SLO, now=NOW)
    query = query_of(redirect_binding_url(IDP_SLO, "SAMLResponse", xml, "t-1", signing_key_pem=idp.key_pem))
    seen = read_redirect_query(query, "SAMLResponse", expect(idp))
    answer = parse_logout_response(seen.xml, expect(idp), request_id="_req-1", query_signed=seen.signed)
    assert answer.status == STATUS_SUCCESS
    assert answer.in_response_to == "_req-1"
    refused("in_response_to_mismatch", parse_logout_response, seen.xml, expect(idp), request_id="_req-2",
            query_signed=True)


def test_signed_logout_request_by_redirect_decodes_per_the_binding(idp: Signer) -> None:
    xml = idp_request()
    url = redirect_binding_url(IDP_SLO + "?tenant=a", "SAMLRequest", xml, "r", signing_key_pem=idp.key_pem)
    params = parse_qs(urlsplit(url).query)
    assert params["tenant"] == ["a"]
    assert zlib.decompress(base64.b64decode(params["SAMLRequest"][0]), -15) == xml
    assert params["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]


def test_sp_metadata_lists_single_logout_for_both_bindings(idp: Signer) -> None:
    xml = sp_metadata_xml(entity_id=SP, acs_url="https://keyhall.test/sso/conn-1/saml/acs", name_id_formats=[],
                          signing_cert_pem=idp.cert_pem, encryption_cert_pem=None, authn_requests_signed=False,
                          valid_until=NOW + timedelta(days=7), slo_url=SLO)
    root = etree.fromstring(xml)
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    services = root.findall(f".//{{{md}}}SingleLogoutService")
    assert [(s.get("Binding"), s.get("Location")) for s in services] == [
        ("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", SLO),
        ("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", SLO),
    ]


def test_post_binding_page_posts_the_signed_xml_only_to_the_idp(idp: Signer) -> None:
    _id, xml = build_logout_response(in_response_to="_req-1", issuer=SP, destination=IDP_SLO, now=NOW,
                                     signing_key_pem=idp.key_pem)
    page, policy = post_binding_page(IDP_SLO, "SAMLResponse", xml, '"><script>x</script>')
    assert f'action="{IDP_SLO}"' in page
    assert base64.b64encode(xml).decode() in page
    assert "<script>x</script>" not in page  # RelayState is escaped
    assert "form-action https://idp.test;" in policy
    assert "script-src 'sha256-" in policy
    root = etree.fromstring(xml)
    assert root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None
    expected = expect(idp, idp_entity_id=SP, slo_url=IDP_SLO)
    assert parse_logout_response(xml, expected, request_id="_req-1").in_response_to == "_req-1"
