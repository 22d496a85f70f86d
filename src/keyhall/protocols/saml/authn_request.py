"""The service provider's ``<samlp:AuthnRequest>`` and the two front-channel bindings that carry it.

The request (saml-core-2.0-os §3.4.1) asks the IdP to sign the person in and to answer with a
``<samlp:Response>`` posted to Keyhall's Assertion Consumer Service: ``ProtocolBinding`` is
HTTP-POST (saml-bindings-2.0-os §3.5) and ``AssertionConsumerServiceURL`` names the ACS, as the
Web Browser SSO Profile allows (saml-profiles-2.0-os §4.1.4.1). ``<saml:Issuer>`` is the SP's
entity ID without a ``Format`` (profiles §4.1.4.1: omitted means ``entity``), and
``<samlp:NameIDPolicy AllowCreate="true">`` (core §3.4.1.1) names the wanted NameID format, if
any. ``ForceAuthn="true"`` (core §3.4.1) asks for a fresh authentication.

Two bindings send it through the browser:

- HTTP-Redirect (bindings §3.4): DEFLATE (RFC 1951, raw), base64 and URL-encode into
  ``SAMLRequest`` (§3.4.4.1); when signed, ``SigAlg`` and ``Signature`` are added, the signature
  covering the exact URL-encoded octets ``SAMLRequest=…&RelayState=…&SigAlg=…`` (§3.4.4.1).
- HTTP-POST (bindings §3.5): base64 of the XML in an auto-submitted HTML form (§3.5.4); when
  signed, an enveloped XML signature (XML-DSig §6.6.4, Exclusive C14N, saml-core-2.0-os §5.4)
  sits right after ``<saml:Issuer>`` and references the request's ``ID``.

``RelayState`` must not exceed 80 bytes (bindings §3.4.3, §3.5.3); a longer value is refused.
Signing keys are RSA (RSA-SHA256) or EC on a NIST curve (ECDSA-SHA256, RFC 9231 §2.3.6). Input
the caller got wrong (a naive ``now``, a relative URL, a key that cannot sign) raises
``ValueError``: nothing here comes from the person signing in.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import quote, urlsplit

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from keyhall.protocols.saml.certificates import isoformat_z
from keyhall.protocols.saml.metadata import BINDING_HTTP_POST, MAX_ENTITY_ID_CHARS, is_http_url

__all__ = [
    "MAX_RELAY_STATE_BYTES",
    "POST_FORM_ID",
    "POST_FORM_SCRIPT",
    "POST_FORM_SCRIPT_CSP_SOURCE",
    "SAMLP_NS",
    "SAML_NS",
    "SIG_ALG_ECDSA_SHA256",
    "SIG_ALG_RSA_SHA256",
    "AuthnRequest",
    "build_authn_request",
    "new_request_id",
    "post_form",
    "redirect_url",
]

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
# Algorithm identifiers of RFC 9231 §2.3.2 and §2.3.6 (formerly RFC 4051).
SIG_ALG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SIG_ALG_ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
MAX_RELAY_STATE_BYTES = 80  # saml-bindings-2.0-os §3.4.3, §3.5.3

POST_FORM_ID = "saml-post-form"
# The inline script is the same on every page, so a CSP hash source allows it without a nonce
# (CSP Level 3 §8.4); it goes in ``script-src``. The form's target must also be allowed by the
# page's ``form-action`` directive.
POST_FORM_SCRIPT = f'document.getElementById("{POST_FORM_ID}").submit();'
POST_FORM_SCRIPT_CSP_SOURCE = (
    "'sha256-" + base64.b64encode(hashlib.sha256(POST_FORM_SCRIPT.encode("utf-8")).digest()).decode("ascii") + "'"
)

_NSMAP = {"samlp": SAMLP_NS, "saml": SAML_NS}
# xs:ID is an xs:NCName (XML Schema Part 2 §3.3.8); this is its ASCII subset.
_XS_ID = re.compile(r"\A[A-Za-z_][A-Za-z0-9._-]*\Z")
# CSP nonce-source: base64-value (CSP Level 3 §2.3.1).
_CSP_NONCE = re.compile(r"\A[A-Za-z0-9+/_-]+={0,2}\Z")

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class AuthnRequest:
    """A built ``<samlp:AuthnRequest>``: its ``ID`` (kept to match ``InResponseTo``) and its XML."""

    id: str  # "_" + 40 hex digits, an xs:ID (saml-core-2.0-os §1.3.4)
    xml: bytes  # UTF-8, unsigned, no XML declaration


def new_request_id() -> str:
    """A fresh xs:ID with 160 random bits (saml-core-2.0-os §1.3.4 asks for at least 128)."""
    return "_" + secrets.token_hex(20)


def _require_url(value: str, name: str) -> None:
    if not is_http_url(value):
        raise ValueError(f"{name} must be an absolute http(s) URL, got {value[:200]!r}")


def build_authn_request(
    *,
    sp_entity_id: str,
    acs_url: str,
    destination: str,
    name_id_format: str | None,
    force_authn: bool,
    now: datetime,
    request_id: str | None = None,
) -> AuthnRequest:
    """Build an AuthnRequest (saml-core-2.0-os §3.4.1) for the Web Browser SSO Profile.

    ``destination`` is the IdP's SSO URL (core §3.2.1 ``Destination``, checked by the IdP under
    bindings §3.4.5.2); ``IssueInstant`` is ``now`` in UTC with a ``Z`` (core §1.3.3).
    ``NameIDPolicy`` (core §3.4.1.1) always says ``AllowCreate="true"`` and carries ``Format``
    only when ``name_id_format`` is given. ``ForceAuthn`` appears only when true (its default is
    false). ``request_id`` defaults to :func:`new_request_id`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    entity_id = sp_entity_id.strip()
    if not entity_id or len(entity_id) > MAX_ENTITY_ID_CHARS:
        raise ValueError(f"sp_entity_id must have 1 to {MAX_ENTITY_ID_CHARS} characters")
    _require_url(acs_url, "acs_url")
    _require_url(destination, "destination")
    if name_id_format is not None and ":" not in name_id_format:
        raise ValueError(f"name_id_format must be a URI (saml-core-2.0-os §8.3), got {name_id_format[:200]!r}")
    identifier = new_request_id() if request_id is None else request_id
    if not _XS_ID.fullmatch(identifier):
        raise ValueError(f"request_id {identifier[:80]!r} is not an xs:ID")

    root = etree.Element(f"{{{SAMLP_NS}}}AuthnRequest", nsmap=_NSMAP)
    root.set("ID", identifier)
    root.set("Version", "2.0")
    root.set("IssueInstant", isoformat_z(now))
    root.set("Destination", destination)
    if force_authn:
        root.set("ForceAuthn", "true")
    root.set("ProtocolBinding", BINDING_HTTP_POST)
    root.set("AssertionConsumerServiceURL", acs_url)
    etree.SubElement(root, f"{{{SAML_NS}}}Issuer").text = entity_id
    policy = etree.SubElement(root, f"{{{SAMLP_NS}}}NameIDPolicy")
    if name_id_format is not None:
        policy.set("Format", name_id_format)
    policy.set("AllowCreate", "true")
    return AuthnRequest(id=identifier, xml=etree.tostring(root, encoding="UTF-8", xml_declaration=False))


def _check_relay_state(relay_state: str | None) -> None:
    if relay_state is not None and len(relay_state.encode("utf-8")) > MAX_RELAY_STATE_BYTES:
        raise ValueError(f"RelayState must not exceed {MAX_RELAY_STATE_BYTES} bytes (saml-bindings-2.0-os §3.4.3)")


def _load_signing_key(key_pem: str) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError("signing key is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"signing key is {type(key).__name__}; SAML signing needs an RSA or EC key")
    return key


def _sig_alg(key: SigningKey) -> Literal["rsa", "ecdsa"]:
    return "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ecdsa"


def _sign_octets(key: SigningKey, octets: bytes) -> bytes:
    """Sign with SHA-256; an ECDSA value is r || s, each left-padded to the curve's size
    (XML-DSig 1.1 §6.4.3), which is how XML-DSig and SAML carry it, not DER."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(octets, padding.PKCS1v15(), hashes.SHA256())
    r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(hashes.SHA256())))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _url_encode(value: str) -> str:
    """Percent-encode every octet outside RFC 3986 unreserved characters (bindings §3.4.4.1)."""
    return quote(value, safe="")


def redirect_url(
    sso_url: str, request: AuthnRequest, relay_state: str | None, *, signing_key_pem: str | None = None
) -> str:
    """The SSO URL carrying ``request`` by the HTTP-Redirect binding (saml-bindings-2.0-os §3.4).

    ``SAMLRequest`` is the raw DEFLATE (RFC 1951) of the XML, base64-encoded (RFC 2045, no line
    breaks) and URL-encoded (§3.4.4.1); ``RelayState`` follows when given (§3.4.3). With
    ``signing_key_pem``, ``SigAlg`` (RSA-SHA256 or ECDSA-SHA256 by key type) is added and
    ``Signature`` is computed over the exact octets ``SAMLRequest=value&RelayState=value&SigAlg=value``
    (values URL-encoded, ``RelayState`` omitted when absent), then base64- and URL-encoded
    (§3.4.4.1). Query parameters already in ``sso_url`` are kept before ours.
    """
    _require_url(sso_url, "sso_url")
    if urlsplit(sso_url).fragment:
        raise ValueError("sso_url must not have a fragment")
    _check_relay_state(relay_state)
    deflater = zlib.compressobj(level=9, wbits=-15)
    deflated = deflater.compress(request.xml) + deflater.flush()
    parts = ["SAMLRequest=" + _url_encode(base64.b64encode(deflated).decode("ascii"))]
    if relay_state is not None:
        parts.append("RelayState=" + _url_encode(relay_state))
    if signing_key_pem is not None:
        key = _load_signing_key(signing_key_pem)
        sig_alg = SIG_ALG_RSA_SHA256 if _sig_alg(key) == "rsa" else SIG_ALG_ECDSA_SHA256
        parts.append("SigAlg=" + _url_encode(sig_alg))
        signature = _sign_octets(key, "&".join(parts).encode("ascii"))
        parts.append("Signature=" + _url_encode(base64.b64encode(signature).decode("ascii")))
    query = "&".join(parts)
    base = sso_url.rstrip("?&")
    separator = "&" if urlsplit(base).query else "?"
    return base + separator + query


def _check_certificate_matches(key: SigningKey, cert_pem: str) -> None:
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("signing_cert_pem is not a PEM X.509 certificate") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(serialization.Encoding.DER, public)
    theirs = certificate.public_key().public_bytes(serialization.Encoding.DER, public)
    if ours != theirs:
        raise ValueError("signing_cert_pem does not hold the public key of signing_key_pem")


def _signed_xml(request: AuthnRequest, key_pem: str, cert_pem: str | None) -> bytes:
    """The request with an enveloped signature (XML-DSig §6.6.4) after ``<saml:Issuer>``.

    SAML's profile of XML-DSig (saml-core-2.0-os §5.4): one ``<ds:Reference>`` whose ``URI`` is
    ``#`` + the request's ``ID``, transforms enveloped-signature then Exclusive C14N, digest
    SHA-256, SignedInfo canonicalized with Exclusive C14N. ``<ds:KeyInfo>`` carries the
    certificate when one is given (core §5.4.5); the IdP is expected to know the key anyway.
    """
    key = _load_signing_key(key_pem)
    if cert_pem is not None:
        _check_certificate_matches(key, cert_pem)
    root = etree.fromstring(request.xml)  # our own XML, built by build_authn_request
    method = xmlsec.constants.TransformRsaSha256 if _sig_alg(key) == "rsa" else xmlsec.constants.TransformEcdsaSha256
    signature = xmlsec.template.create(root, xmlsec.constants.TransformExclC14N, method, ns="ds")
    issuer = root.find(f"{{{SAML_NS}}}Issuer")
    if issuer is None:
        raise ValueError("the AuthnRequest has no <saml:Issuer> to place the signature after")
    issuer.addnext(signature)
    reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri="#" + request.id)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
    xmlsec_key = xmlsec.Key.from_memory(key_pem.encode("ascii"), xmlsec.constants.KeyDataFormatPem)
    if cert_pem is not None:
        x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
        xmlsec.template.x509_data_add_certificate(x509_data)
        xmlsec_key.load_cert_from_memory(cert_pem.encode("ascii"), xmlsec.constants.KeyDataFormatCertPem)
    xmlsec.tree.add_ids(root, ["ID"])
    context = xmlsec.SignatureContext()
    context.key = xmlsec_key
    context.sign(signature)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def post_form(
    sso_url: str,
    request: AuthnRequest,
    relay_state: str | None,
    *,
    signing_key_pem: str | None = None,
    signing_cert_pem: str | None = None,
    script_nonce: str | None = None,
) -> str:
    """An HTML page that posts ``request`` to ``sso_url`` by the HTTP-POST binding (bindings §3.5).

    The form (``id`` :data:`POST_FORM_ID`) holds ``SAMLRequest`` (base64 of the XML, §3.5.4) and
    ``RelayState`` when given (§3.5.3). With ``signing_key_pem`` the XML carries an enveloped
    signature (see :func:`_signed_xml`; ``signing_cert_pem``, if given, must match the key and
    goes into ``<ds:KeyInfo>``). The inline script that submits the form is always
    :data:`POST_FORM_SCRIPT`, so a strict CSP allows it with :data:`POST_FORM_SCRIPT_CSP_SOURCE`
    in ``script-src`` (or with ``script_nonce``, written as the script's ``nonce``); the CSP's
    ``form-action`` must allow ``sso_url``. A ``<noscript>`` button serves browsers without
    JavaScript.
    """
    _require_url(sso_url, "sso_url")
    _check_relay_state(relay_state)
    if signing_cert_pem is not None and signing_key_pem is None:
        raise ValueError("signing_cert_pem needs signing_key_pem")
    if script_nonce is not None and not _CSP_NONCE.fullmatch(script_nonce):
        raise ValueError("script_nonce must be a base64 value (CSP nonce-source)")
    xml = request.xml if signing_key_pem is None else _signed_xml(request, signing_key_pem, signing_cert_pem)
    encoded = base64.b64encode(xml).decode("ascii")
    fields = [f'<input type="hidden" name="SAMLRequest" value="{encoded}">']
    if relay_state is not None:
        fields.append(f'<input type="hidden" name="RelayState" value="{html.escape(relay_state, quote=True)}">')
    nonce = "" if script_nonce is None else f' nonce="{script_nonce}"'
    hidden = "\n".join(fields)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        '<head><meta charset="utf-8"><meta name="robots" content="noindex">'
        "<title>Signing in…</title></head>\n"
        "<body>\n"
        f'<form id="{POST_FORM_ID}" method="post" action="{html.escape(sso_url, quote=True)}">\n'
        f"{hidden}\n"
        "<noscript><p>JavaScript is off in this browser. Press Continue to go on signing in.</p>"
        '<button type="submit">Continue</button></noscript>\n'
        "</form>\n"
        f"<script{nonce}>{POST_FORM_SCRIPT}</script>\n"
        "</body>\n"
        "</html>\n"
    )
