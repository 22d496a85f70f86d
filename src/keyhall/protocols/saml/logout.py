"""SAML 2.0 Single Logout messages (saml-core-2.0-os §3.7) and their front-channel bindings.

Keyhall is the service provider. It receives an IdP's ``<samlp:LogoutRequest>`` (core §3.7.1)
and answers it with a ``<samlp:LogoutResponse>`` (core §3.7.2, a StatusResponseType §3.2.2); it
sends the IdP its own LogoutRequest when a person signs out at Keyhall and receives the IdP's
LogoutResponse back. The checks of a received message (core §3.7.3, profiles §4.4.4):

- a signature by a *pinned* IdP key: under HTTP-Redirect (bindings §3.4.4.1) over the exact
  URL-encoded octets ``SAMLRequest=…&RelayState=…&SigAlg=…`` as received (``SAMLResponse`` for a
  response), ``SigAlg`` RSA or ECDSA with SHA-256/384/512 (SHA-1 only when allowed); under
  HTTP-POST (bindings §3.5.4) an enveloped XML signature on the message, checked by
  ``protocols.saml.xmldsig``. Unsigned messages are refused unless the caller allows them;
- ``<saml:Issuer>`` is the IdP's entity id (core §3.2.1);
- ``Destination`` is Keyhall's SLO URL (bindings §3.4.5.2, §3.5.5.2);
- a request's ``NotOnOrAfter`` (core §3.7.1) has not passed, nor is its ``IssueInstant`` older
  than ``MAX_MESSAGE_AGE``: the message's ID is then remembered by the caller's replay cache
  until :attr:`LogoutRequestIn.usable_until`;
- a response's ``InResponseTo`` names the request Keyhall sent.

Decoding (raw DEFLATE + base64 for Redirect, base64 for POST) and XML parsing refuse a DTD and
oversize input (``protocols.saml.xml``). Everything refused raises ``SamlResponseError`` with a
typed reason; no field of an unverified message is trusted beyond saying what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import html
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn
from urllib.parse import unquote_plus, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from keyhall.errors import KeyhallError, SamlReason, SamlResponseError
from keyhall.protocols.saml.authn_request import (
    POST_FORM_ID,
    POST_FORM_SCRIPT,
    POST_FORM_SCRIPT_CSP_SOURCE,
    SAML_NS,
    SAMLP_NS,
    SIG_ALG_ECDSA_SHA256,
    SIG_ALG_RSA_SHA256,
    AuthnRequest,
    _load_signing_key,
    _sig_alg,
    _sign_octets,
    _signed_xml,
    _url_encode,
    new_request_id,
)
from keyhall.protocols.saml.certificates import isoformat_z
from keyhall.protocols.saml.times import instant, optional_instant, within
from keyhall.protocols.saml.xml import parse_untrusted_xml
from keyhall.protocols.saml.xmldsig import enveloped_signature, verify_enveloped_signature

__all__ = [
    "MAX_MESSAGE_AGE",
    "STATUS_SUCCESS",
    "LogoutExpectations",
    "LogoutRequestIn",
    "LogoutResponseIn",
    "RedirectMessage",
    "build_logout_request",
    "build_logout_response",
    "parse_logout_request",
    "parse_logout_response",
    "post_binding_page",
    "post_message_xml",
    "read_redirect_query",
    "redirect_binding_url",
]

STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
MAX_MESSAGE_AGE = timedelta(minutes=10)  # a logout message is used at once; older is a replay or a stale page
MAX_MESSAGE_BYTES = 262_144
_MAX_INFLATED = 4 * MAX_MESSAGE_BYTES

# SHA-1 only for a connection that opted in (``allow_sha1``), as for responses.
_SHA1 = {"http://www.w3.org/2000/09/xmldsig#rsa-sha1": hashes.SHA1(),  # noqa: S303
         "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1": hashes.SHA1()}  # noqa: S303
_QUERY_SIG_ALGS: dict[str, hashes.HashAlgorithm] = {
    SIG_ALG_RSA_SHA256: hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
    SIG_ALG_ECDSA_SHA256: hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": hashes.SHA384(),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": hashes.SHA512(),
}


def _fail(message: str, reason: SamlReason) -> NoReturn:
    raise SamlResponseError(message, reason=reason)


@dataclass(frozen=True)
class LogoutExpectations:
    """What a received logout message must match: the IdP (entity id, pinned certificates), Keyhall's
    SLO URL as ``Destination``, whether a signature is required, the clock and its skew."""

    idp_entity_id: str
    slo_url: str
    certificates: Sequence[str]
    now: datetime
    require_signature: bool = True
    allow_sha1: bool = False
    skew_seconds: int = 60


@dataclass(frozen=True)
class RedirectMessage:
    """An HTTP-Redirect message as received: the decoded XML, RelayState, and whether the query
    signature verified (None: the query carried none)."""

    xml: bytes
    relay_state: str | None
    signed: bool


@dataclass(frozen=True)
class LogoutRequestIn:
    id: str
    name_id: str
    name_id_format: str | None
    session_indexes: tuple[str, ...]
    usable_until: datetime  # keep the ID in the replay cache until then


@dataclass(frozen=True)
class LogoutResponseIn:
    id: str
    in_response_to: str
    status: str
    usable_until: datetime


# -- the HTTP-Redirect binding (saml-bindings-2.0-os §3.4) -------------------------------------------------

def _raw_query_fields(raw_query: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _sep, value = part.partition("=")
        if name in fields:
            _fail(f"the query repeats {name[:40]}", "malformed")
        fields[name] = value
    return fields


def _inflate(encoded: str, field: str) -> bytes:
    try:
        deflated = base64.b64decode(unquote_plus(encoded), validate=True)
        inflater = zlib.decompressobj(wbits=-15)
        xml = inflater.decompress(deflated, _MAX_INFLATED)
    except (binascii.Error, ValueError, zlib.error):
        _fail(f"the {field} is not base64 of DEFLATE data (saml-bindings-2.0-os §3.4.4.1)", "malformed")
    if inflater.unconsumed_tail:
        _fail(f"the {field} inflates to more than {_MAX_INFLATED} bytes", "too_large")
    return xml


def _public_keys(certificates: Sequence[str]) -> list[rsa.RSAPublicKey | ec.EllipticCurvePublicKey]:
    keys: list[rsa.RSAPublicKey | ec.EllipticCurvePublicKey] = []
    for pem in certificates:
        key = x509.load_pem_x509_certificate(pem.encode("ascii")).public_key()
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            keys.append(key)
    return keys


def _verifies(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, signature: bytes, octets: bytes,
              digest: hashes.HashAlgorithm, sig_alg: str) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if "rsa" not in sig_alg:
                return False
            key.verify(signature, octets, padding.PKCS1v15(), digest)
        else:
            if "ecdsa" not in sig_alg or len(signature) % 2:
                return False
            half = len(signature) // 2  # r || s (XML-DSig 1.1 §6.4.3)
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
            key.verify(der, octets, ec.ECDSA(digest))
    except InvalidSignature:
        return False
    return True


def read_redirect_query(raw_query: str, field: str, expect: LogoutExpectations) -> RedirectMessage:
    """Decode the HTTP-Redirect message ``field`` (``SAMLRequest`` or ``SAMLResponse``) from the raw,
    still URL-encoded query string and verify its signature (bindings §3.4.4.1) with the pinned keys.
    A query without ``Signature`` is returned with ``signed=False``; the caller decides."""
    fields = _raw_query_fields(raw_query)
    encoded = fields.get(field)
    if not encoded:
        _fail(f"the query has no {field}", "malformed")
    if len(encoded) > 2 * MAX_MESSAGE_BYTES:
        _fail(f"the {field} is larger than the limit", "too_large")
    relay = unquote_plus(fields["RelayState"]) if "RelayState" in fields else None
    signed = "Signature" in fields or "SigAlg" in fields
    if signed:
        sig_alg = unquote_plus(fields.get("SigAlg", ""))
        digest = _QUERY_SIG_ALGS.get(sig_alg) or (_SHA1.get(sig_alg) if expect.allow_sha1 else None)
        if digest is None:
            _fail(f"the SigAlg {sig_alg[:120]!r} is not allowed", "sha1_refused" if sig_alg in _SHA1
                  else "algorithm_not_allowed")
        try:
            signature = base64.b64decode(unquote_plus(fields.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            _fail("the Signature is not base64", "malformed")
        parts = [f"{field}={encoded}"]
        if "RelayState" in fields:
            parts.append(f"RelayState={fields['RelayState']}")
        parts.append(f"SigAlg={fields['SigAlg']}")
        octets = "&".join(parts).encode("ascii", "replace")
        if not signature or not any(_verifies(k, signature, octets, digest, sig_alg)
                                    for k in _public_keys(expect.certificates)):
            _fail("the query signature does not verify with the identity provider's pinned certificate(s)",
                  "bad_signature")
    return RedirectMessage(xml=_inflate(encoded, field), relay_state=relay, signed=signed)


def redirect_binding_url(url: str, field: str, xml: bytes, relay_state: str | None, *,
                         signing_key_pem: str | None = None) -> str:
    """``url`` carrying ``xml`` as ``field`` (``SAMLRequest``/``SAMLResponse``) by HTTP-Redirect
    (bindings §3.4.4.1): raw DEFLATE, base64, URL-encoded; signed over
    ``field=…&RelayState=…&SigAlg=…`` when ``signing_key_pem`` is given."""
    deflater = zlib.compressobj(level=9, wbits=-15)
    parts = [f"{field}=" + _url_encode(base64.b64encode(deflater.compress(xml) + deflater.flush()).decode("ascii"))]
    if relay_state is not None:
        parts.append("RelayState=" + _url_encode(relay_state))
    if signing_key_pem is not None:
        key = _load_signing_key(signing_key_pem)
        parts.append("SigAlg=" + _url_encode(SIG_ALG_RSA_SHA256 if _sig_alg(key) == "rsa" else SIG_ALG_ECDSA_SHA256))
        parts.append("Signature=" + _url_encode(base64.b64encode(_sign_octets(key, "&".join(parts).encode())).decode()))
    base = url.rstrip("?&")
    return base + ("&" if urlsplit(base).query else "?") + "&".join(parts)


def post_binding_page(url: str, field: str, xml: bytes, relay_state: str | None) -> tuple[str, str]:
    """(HTML page, its Content-Security-Policy) that posts ``xml`` as ``field`` to ``url`` by HTTP-POST
    (bindings §3.5.4: base64 of the XML, which carries its own signature; RelayState §3.5.3). The
    policy allows only the page's one inline script (by hash) and a form sent to ``url``'s origin."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"url must be an absolute http(s) URL, got {url[:200]!r}")
    fields = [f'<input type="hidden" name="{field}" value="{base64.b64encode(xml).decode("ascii")}">']
    if relay_state is not None:
        fields.append(f'<input type="hidden" name="RelayState" value="{html.escape(relay_state, quote=True)}">')
    hidden = "\n".join(fields)
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><meta name="robots" content="noindex">'
        "<title>Signing out…</title></head>\n<body>\n"
        f'<form id="{POST_FORM_ID}" method="post" action="{html.escape(url, quote=True)}">\n{hidden}\n'
        "<noscript><p>JavaScript is off in this browser. Press Continue to finish signing out.</p>"
        '<button type="submit">Continue</button></noscript>\n</form>\n'
        f"<script>{POST_FORM_SCRIPT}</script>\n</body>\n</html>\n"
    )
    policy = (f"default-src 'none'; script-src {POST_FORM_SCRIPT_CSP_SOURCE}; "
              f"form-action {parts.scheme}://{parts.netloc}; frame-ancestors 'none'; base-uri 'none'")
    return page, policy


def post_message_xml(encoded: str, field: str) -> bytes:
    """The HTTP-POST binding's base64 form value (bindings §3.5.4)."""
    try:
        xml = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        _fail(f"the {field} is not base64", "malformed")
    if not xml:
        _fail(f"the {field} is empty", "malformed")
    return xml


# -- the messages (saml-core-2.0-os §3.7) ----------------------------------------------------------------

class _XmlRefused(KeyhallError):
    code = "saml_logout_invalid"


def _text(element: etree._Element) -> str:
    return "".join(str(t) for t in element.itertext()).strip()


def _parse(xml: bytes, tag: str) -> etree._Element:
    try:
        root = parse_untrusted_xml(xml, max_bytes=MAX_MESSAGE_BYTES, field="SAML logout message", error=_XmlRefused,
                                   subject="SAML logout message")
    except _XmlRefused as exc:
        reason = exc.details.get("reason")
        _fail(exc.message, reason if reason in ("dtd_forbidden", "too_large") else "malformed")
    if root.tag != f"{{{SAMLP_NS}}}{tag}":
        _fail(f"the message is a {etree.QName(root).localname}, not a samlp:{tag}", "malformed")
    if root.get("Version") != "2.0" or not root.get("ID"):
        _fail(f"the {tag} is not SAML 2.0 or has no ID", "malformed")
    return root


def _check_common(root: etree._Element, expect: LogoutExpectations, *, query_signed: bool) -> datetime:
    """Signature, Issuer, Destination, IssueInstant age; returns the IssueInstant."""
    what = etree.QName(root).localname
    signature = enveloped_signature(root)
    if signature is not None:
        verify_enveloped_signature(root, signature, certificates=list(expect.certificates),
                                   allow_sha1=expect.allow_sha1)
    elif not query_signed and expect.require_signature:
        _fail(f"the {what} is not signed", "unsigned")
    issuer = root.find(f"{{{SAML_NS}}}Issuer")
    issued_by = _text(issuer) if issuer is not None else ""
    if issued_by != expect.idp_entity_id:
        _fail(f"the {what} was issued by {issued_by[:200]!r}, not the identity provider", "wrong_issuer")
    if root.get("Destination") != expect.slo_url:
        _fail(f"the {what}'s Destination is not Keyhall's single logout URL", "wrong_destination")
    issued = instant(root, "IssueInstant", what)
    within(expect.now, expect.skew_seconds, f"the {what}'s IssueInstant", not_before=issued,
           not_on_or_after=issued + MAX_MESSAGE_AGE)
    return issued


def parse_logout_request(xml: bytes, expect: LogoutExpectations, *, query_signed: bool = False) -> LogoutRequestIn:
    """A verified LogoutRequest (core §3.7.1). ``query_signed``: its HTTP-Redirect query signature
    verified (:func:`read_redirect_query`)."""
    root = _parse(xml, "LogoutRequest")
    issued = _check_common(root, expect, query_signed=query_signed)
    ends = optional_instant(root, "NotOnOrAfter", "LogoutRequest")
    within(expect.now, expect.skew_seconds, "the LogoutRequest's NotOnOrAfter", not_on_or_after=ends)
    name_id = root.find(f"{{{SAML_NS}}}NameID")
    if name_id is None:
        _fail("the LogoutRequest has no saml:NameID (an EncryptedID is not supported)", "missing_subject")
    value = _text(name_id)
    if not value:
        _fail("the LogoutRequest's NameID is empty", "missing_subject")
    indexes = tuple(_text(e) for e in root.findall(f"{{{SAMLP_NS}}}SessionIndex"))
    until = min([issued + MAX_MESSAGE_AGE, *([ends] if ends else [])]) + timedelta(seconds=expect.skew_seconds)
    return LogoutRequestIn(id=str(root.get("ID")), name_id=value, name_id_format=name_id.get("Format"),
                           session_indexes=tuple(i for i in indexes if i), usable_until=until)


def parse_logout_response(xml: bytes, expect: LogoutExpectations, *, request_id: str | None,
                          query_signed: bool = False) -> LogoutResponseIn:
    """A verified LogoutResponse (core §3.7.2) answering the request ``request_id``."""
    root = _parse(xml, "LogoutResponse")
    issued = _check_common(root, expect, query_signed=query_signed)
    in_response_to = root.get("InResponseTo") or ""
    if request_id is None or in_response_to != request_id:
        _fail("the LogoutResponse does not answer the request Keyhall sent", "in_response_to_mismatch")
    code = root.find(f"{{{SAMLP_NS}}}Status/{{{SAMLP_NS}}}StatusCode")
    status = code.get("Value", "") if code is not None else ""
    return LogoutResponseIn(id=str(root.get("ID")), in_response_to=in_response_to, status=status,
                            usable_until=issued + MAX_MESSAGE_AGE + timedelta(seconds=expect.skew_seconds))


def _root(tag: str, identifier: str, issuer: str, destination: str, now: datetime) -> etree._Element:
    root = etree.Element(f"{{{SAMLP_NS}}}{tag}", nsmap={"samlp": SAMLP_NS, "saml": SAML_NS})
    root.set("ID", identifier)
    root.set("Version", "2.0")
    root.set("IssueInstant", isoformat_z(now))
    root.set("Destination", destination)
    return root


def build_logout_response(*, in_response_to: str, issuer: str, destination: str, now: datetime,
                          status: str = STATUS_SUCCESS, signing_key_pem: str | None = None,
                          response_id: str | None = None) -> tuple[str, bytes]:
    """(ID, XML) of a LogoutResponse (core §3.7.2); enveloped-signed when a key is given (for
    HTTP-POST; under HTTP-Redirect the query is signed instead)."""
    identifier = response_id or new_request_id()
    root = _root("LogoutResponse", identifier, issuer, destination, now)
    root.set("InResponseTo", in_response_to)
    etree.SubElement(root, f"{{{SAML_NS}}}Issuer").text = issuer
    etree.SubElement(etree.SubElement(root, f"{{{SAMLP_NS}}}Status"), f"{{{SAMLP_NS}}}StatusCode").set("Value", status)
    return identifier, _finish(identifier, root, signing_key_pem)


def build_logout_request(*, issuer: str, destination: str, name_id: str, name_id_format: str | None,
                         now: datetime, session_index: str | None = None, signing_key_pem: str | None = None,
                         not_on_or_after: timedelta = timedelta(minutes=5)) -> tuple[str, bytes]:
    """(ID, XML) of a LogoutRequest (core §3.7.1) for the person ``name_id``."""
    identifier = new_request_id()
    root = _root("LogoutRequest", identifier, issuer, destination, now)
    root.set("NotOnOrAfter", isoformat_z(now + not_on_or_after))
    etree.SubElement(root, f"{{{SAML_NS}}}Issuer").text = issuer
    name = etree.SubElement(root, f"{{{SAML_NS}}}NameID")
    if name_id_format:
        name.set("Format", name_id_format)
    name.text = name_id
    if session_index:
        etree.SubElement(root, f"{{{SAMLP_NS}}}SessionIndex").text = session_index
    return identifier, _finish(identifier, root, signing_key_pem)


def _finish(identifier: str, root: etree._Element, signing_key_pem: str | None) -> bytes:
    xml = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return xml if signing_key_pem is None else _signed_xml(AuthnRequest(id=identifier, xml=xml), signing_key_pem, None)
