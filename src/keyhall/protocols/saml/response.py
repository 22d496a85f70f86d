"""The SAML 2.0 ``<samlp:Response>`` an identity provider posts to the assertion consumer service.

The service provider's side of the Web Browser SSO profile (saml-profiles-2.0-os §4.1.4.2-§4.1.4.3)
over the HTTP-POST binding (saml-bindings-2.0-os §3.5.4): the response (saml-core-2.0-os §3.2.2),
its one assertion (§2.3.3), subject (§2.4), conditions (§2.5.1) and statements (§2.7.2, §2.7.3).
Pure: the caller passes the form value, its expectations and the time. The replay cache is the
caller's: it keeps ``assertion_id`` until ``not_on_or_after``, which :mod:`.times` bounds (an hour
after IssueInstant at most, whatever NotOnOrAfter says). Checks, in order (``reason``):

1. base64 within ``max_bytes`` (``too_large``, ``malformed``), no DTD (``dtd_forbidden``), a
   ``samlp:Response`` of Version 2.0 (``malformed``); StatusCode Success (``status_not_success``);
2. layout, before any signature: IDs unique; assertions only as the Response's direct children;
   signatures only directly on the Response or the Assertion (``signature_wrapping``); exactly
   one Assertion or EncryptedAssertion (``multiple_assertions``);
3. signatures (:mod:`.xmldsig`): the Response's first, as it covers an encrypted assertion's
   ciphertext; then decryption (:mod:`.encryption`) and the Assertion's; at least one must exist
   (``unsigned``). From here on, data is read only from the verified element objects;
4. the Response: Destination is the ACS URL, and present when the Response is signed
   (saml-bindings-2.0-os §3.5.5.2) (``wrong_destination``); Issuer, required when the Response is
   signed or the assertion encrypted (profiles §4.1.4.2), is the IdP (``wrong_issuer``);
5. the Assertion: Issuer (``wrong_issuer``); IssueInstant, NotBefore and NotOnOrAfter (§2.5.1.2)
   within ``skew_seconds`` (``not_yet_valid``, ``expired``); every AudienceRestriction names the SP
   (§2.5.1.4, ``wrong_audience``); no unknown condition (§2.5.1, ``malformed``); a NameID
   (``missing_subject``); a bearer SubjectConfirmation whose data has Recipient = ACS URL
   (``wrong_recipient``), NotOnOrAfter ahead (``expired``), InResponseTo = the request's ID
   (``in_response_to_mismatch``), or none when IdP-initiated login is allowed (``unsolicited``);
   an AuthnStatement (profiles §4.1.4.2) whose SessionNotOnOrAfter has not passed and whose
   AuthnInstant is not in the future; and the assertion not older than ``MAX_ASSERTION_AGE``
   (``expired``). Times are compared overflow-free, any year 0001-9999 (:mod:`.times`).

Text values are the whole text content of their element: a comment inside a NameID splits its
text node, not the value read (CVE-2017-11427).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, NoReturn

from lxml import etree

from keyhall.errors import KeyhallError, SamlReason, SamlResponseError
from keyhall.protocols.saml.encryption import open_encrypted_assertion
from keyhall.protocols.saml.times import instant as _instant
from keyhall.protocols.saml.times import optional_instant as _optional_instant
from keyhall.protocols.saml.times import usable_until, within
from keyhall.protocols.saml.xml import DEFAULT_MAX_BYTES, parse_untrusted_xml
from keyhall.protocols.saml.xmldsig import enveloped_signature, refuse_wrapping, verify_enveloped_signature

__all__ = ["SamlAssertion", "SamlExpectations", "parse_saml_response"]

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
_RESPONSE = f"{{{SAMLP_NS}}}Response"
_STATUS_CODE = f"{{{SAMLP_NS}}}StatusCode"
_ASSERTIONS = (f"{{{SAML_NS}}}Assertion", f"{{{SAML_NS}}}EncryptedAssertion")
_KNOWN_CONDITIONS = frozenset(f"{{{SAML_NS}}}{n}" for n in ("AudienceRestriction", "OneTimeUse", "ProxyRestriction"))
_BASE64_BLANKS = b" \t\r\n"
_BLANKS = re.compile(r"\s+")
_MAX_SHOWN = 200

Signed = Literal["response", "assertion", "both"]


@dataclass(frozen=True, kw_only=True)
class SamlExpectations:
    """What the service provider expects of a Response, and the moment it is judged at."""

    acs_url: str
    sp_entity_id: str
    idp_entity_id: str
    certificates: Sequence[str]  # pinned IdP signing certificates (PEM); several during a rotation
    request_id: str | None  # the AuthnRequest's ID; None when no request was sent (IdP-initiated)
    now: datetime  # timezone-aware
    allow_idp_initiated: bool = False
    allow_sha1: bool = False
    skew_seconds: int = 60
    sp_private_key: str | None = None  # PEM, to decrypt an EncryptedAssertion
    # During an SP key rollover: the next (published, not yet active) and previous keys also decrypt.
    sp_other_private_keys: Sequence[str] = ()
    max_bytes: int = DEFAULT_MAX_BYTES  # of the decoded XML


@dataclass(frozen=True, kw_only=True)
class SamlAssertion:
    """What a verified Response says about the person who signed in."""

    response_id: str  # the Response's ID, which is signed only when the Response is
    assertion_id: str
    issuer: str
    name_id: str
    name_id_format: str | None
    session_index: str | None
    attributes: dict[str, list[str]]  # Attribute Name → values, in document order
    in_response_to: str | None
    not_on_or_after: datetime  # latest instant (skew included) the assertion is usable: keep its ID till then
    authn_instant: datetime | None  # when the IdP authenticated the person (AuthnStatement, §2.7.2)
    authn_context_class_ref: str | None = None  # how it did (AuthnContext/AuthnContextClassRef, §2.7.2.2)
    signed_element: Signed
    signature_methods: tuple[str, ...] = ()  # the SignatureMethod algorithm of each verified signature


class _XmlRefused(KeyhallError):
    """What the hardened parser raises here, translated into a SamlResponseError."""


def _fail(message: str, reason: SamlReason, **details: object) -> NoReturn:
    raise SamlResponseError(message, reason=reason, details=details or None)


def _shown(text: str | None) -> str:
    flat = _BLANKS.sub(" ", text or "").strip()
    return flat if len(flat) <= _MAX_SHOWN else flat[: _MAX_SHOWN - 3] + "..."


def _saml(name: str) -> str:
    return f"{{{SAML_NS}}}{name}"


def parse_saml_response(saml_response: str | bytes, expect: SamlExpectations) -> SamlAssertion:
    """Verify the base64 ``SAMLResponse`` form value and return its assertion; see the module doc.

    Raises ``SamlResponseError``; ``CertificateError`` when a pinned certificate is unusable and
    ``ValueError`` when ``expect`` itself is unusable (naive ``now``, no certificates).
    """
    if expect.now.tzinfo is None:
        raise ValueError("expect.now must be a timezone-aware datetime")
    if not expect.certificates:
        raise ValueError("at least one pinned IdP certificate is required")
    methods: list[str] = []  # the SignatureMethod of each verified signature, for the caller's record
    response = _parse(_decode(saml_response, expect.max_bytes), expect.max_bytes)
    _check_status(response)
    refuse_wrapping(response)
    child = _the_assertion(response)
    response_signed = _verify_if_signed(response, expect, methods=methods)
    if child.tag == _ASSERTIONS[1]:

        def check_decrypted(assertion: etree._Element) -> bool:
            refuse_wrapping(response, assertion)
            return _verify_if_signed(assertion, expect, required=not response_signed, methods=methods)

        assertion, assertion_signed = open_encrypted_assertion(
            child, [key for key in (expect.sp_private_key, *expect.sp_other_private_keys) if key],
            ciphertext_signed=response_signed, then=check_decrypted
        )
    else:
        assertion_signed = _verify_if_signed(child, expect, required=not response_signed, methods=methods)
        assertion = child
    signed: Signed = "both" if response_signed and assertion_signed else "response" if response_signed else "assertion"
    _check_response(response, expect, signed=response_signed, encrypted=child is not assertion)
    return replace(_read_assertion(assertion, response, expect, signed), signature_methods=tuple(methods))


def _verify_if_signed(element: etree._Element, expect: SamlExpectations, *, required: bool = False,
                      methods: list[str] | None = None) -> bool:
    """Verify the element's enveloped signature, if it has one; ``required``: it must have one.
    The verified signature's algorithm is added to ``methods``."""
    signature = enveloped_signature(element)
    if signature is None:
        if required:
            _fail("neither the Response nor the Assertion is signed", "unsigned")
        return False
    verified = verify_enveloped_signature(element, signature, certificates=expect.certificates,
                                          allow_sha1=expect.allow_sha1)
    if methods is not None:
        methods.append(verified.shape.signature_method)
    return True


# --- the document --------------------------------------------------------------------------------


def _decode(saml_response: str | bytes, max_bytes: int) -> bytes:
    """The HTTP-POST binding's base64 form value (saml-bindings-2.0-os §3.5.4), line breaks allowed."""
    limit = 4 * ((max_bytes + 2) // 3)
    raw = saml_response.encode("ascii", "replace") if isinstance(saml_response, str) else saml_response
    if len(raw) > 2 * limit or len(compact := raw.translate(None, _BASE64_BLANKS)) > limit:
        _fail(f"the SAMLResponse is larger than the {max_bytes}-byte limit", "too_large", limit=max_bytes)
    try:
        document = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        _fail("the SAMLResponse is not base64", "malformed")
    if not document:
        _fail("the SAMLResponse is empty", "malformed")
    return document


def _parse(document: bytes, max_bytes: int) -> etree._Element:
    try:
        root = parse_untrusted_xml(
            document, max_bytes=max_bytes, field="SAMLResponse", error=_XmlRefused, subject="SAML response"
        )
    except _XmlRefused as exc:
        reason = exc.details.get("reason")
        _fail(exc.message, reason if reason in ("dtd_forbidden", "too_large") else "malformed")
    if root.tag != _RESPONSE:
        _fail(f"the document is a {etree.QName(root).localname}, not a samlp:Response", "malformed")
    _header(root, "Response")
    return root


def _header(element: etree._Element, what: str) -> datetime:
    """Version, ID and IssueInstant, required on responses (§3.2.2) and assertions (§2.3.3)."""
    if element.get("Version") != "2.0":
        _fail(f'the {what} is not SAML 2.0 (Version="{_shown(element.get("Version"))}")', "malformed")
    if not element.get("ID"):
        _fail(f"the {what} has no ID", "malformed")
    return _instant(element, "IssueInstant", what)


def _text(element: etree._Element, what: str | None = None) -> str:
    """The whole text content (XPath 1.0 §5.2 string-value): comments split text nodes, not this.
    With ``what``, the element must hold text only."""
    if what is not None and any(isinstance(child.tag, str) for child in element):
        _fail(f"the {what} must hold text only", "malformed")
    return "".join(str(text) for text in element.itertext()).strip()


def _check_status(response: etree._Element) -> None:
    """saml-core-2.0-os §3.2.2.1-§3.2.2.3: Status/StatusCode, nested codes and StatusMessage."""
    status = response.find(f"{{{SAMLP_NS}}}Status")
    code = status.find(_STATUS_CODE) if status is not None else None
    if status is None or code is None:
        _fail("the Response has no Status/StatusCode", "malformed")
    if code.get("Value") == STATUS_SUCCESS:
        return
    codes: list[str] = []
    while code is not None:
        codes.append(_shown(code.get("Value")))
        code = code.find(_STATUS_CODE)
    message_element = status.find(f"{{{SAMLP_NS}}}StatusMessage")
    message = _shown(_text(message_element)) if message_element is not None else ""
    names = ", ".join(value.rsplit(":", 1)[-1] for value in codes)
    _fail(
        f"the identity provider did not sign the user in: status {names}" + (f" ({message})" if message else ""),
        "status_not_success",
        status_codes=codes,
        status_message=message or None,
    )


def _the_assertion(response: etree._Element) -> etree._Element:
    """The Response's one Assertion or EncryptedAssertion (saml-profiles-2.0-os §4.1.4.2)."""
    direct = [child for child in response if child.tag in _ASSERTIONS]
    if not direct:
        _fail("the Response carries no assertion (saml-profiles-2.0-os §4.1.4.2)", "malformed")
    if len(direct) > 1:
        _fail(f"the Response carries {len(direct)} assertions; exactly one is accepted", "multiple_assertions")
    return direct[0]


def _issuer(element: etree._Element, expect: SamlExpectations, what: str, *, required: bool) -> str | None:
    """saml-core-2.0-os §2.2.5; saml-profiles-2.0-os §4.1.4.2: entity format, the IdP's entity ID."""
    issuers = element.findall(_saml("Issuer"))
    if len(issuers) > 1:
        _fail(f"the {what} has {len(issuers)} Issuers", "malformed")
    if not issuers:
        if required:
            _fail(f"the {what} names no Issuer", "wrong_issuer")
        return None
    issuer_format = issuers[0].get("Format")
    if issuer_format not in (None, ENTITY_FORMAT):
        _fail(f'the {what}\'s Issuer has Format "{_shown(issuer_format)}", not {ENTITY_FORMAT}', "wrong_issuer")
    issuer = _text(issuers[0], f"{what}'s Issuer")
    if issuer != expect.idp_entity_id:
        _fail(f'the {what} was issued by "{_shown(issuer)}", not by "{expect.idp_entity_id}"', "wrong_issuer")
    return issuer


def _within(expect: SamlExpectations, what: str, **window: datetime | None) -> None:
    within(expect.now, expect.skew_seconds, what, **window)


def _check_response(response: etree._Element, expect: SamlExpectations, *, signed: bool, encrypted: bool) -> None:
    """Step 4 of the module doc."""
    destination = response.get("Destination")
    if destination is None and signed:
        _fail("the signed Response has no Destination (saml-bindings-2.0-os §3.5.5.2)", "wrong_destination")
    if destination is not None and destination != expect.acs_url:
        _fail(f'the Response is addressed to "{_shown(destination)}", not to {expect.acs_url}', "wrong_destination")
    _issuer(response, expect, "Response", required=signed or encrypted)
    _within(expect, "the Response's IssueInstant", not_before=_instant(response, "IssueInstant", "Response"))


# --- the assertion -------------------------------------------------------------------------------


def _read_assertion(
    assertion: etree._Element, response: etree._Element, expect: SamlExpectations, signed: Signed
) -> SamlAssertion:
    """Step 5 of the module doc, reading only from the verified ``assertion`` element."""
    issued = _header(assertion, "Assertion")
    _within(expect, "the Assertion's IssueInstant", not_before=issued)
    issuer = _issuer(assertion, expect, "Assertion", required=True) or ""
    conditions_end = _check_conditions(assertion, expect)
    name_id, name_id_format, subject = _name_id(assertion)
    confirmation_end, in_response_to = _confirm_bearer(subject, response, expect)
    session_index, authn_instant, class_ref = _authn_statement(assertion, expect)
    return SamlAssertion(
        response_id=response.get("ID") or "",
        assertion_id=assertion.get("ID") or "",
        issuer=issuer,
        name_id=name_id,
        name_id_format=name_id_format,
        session_index=session_index,
        attributes=_attributes(assertion),
        in_response_to=in_response_to,
        not_on_or_after=usable_until(expect.now, expect.skew_seconds, issued, conditions_end, confirmation_end),
        authn_instant=authn_instant,
        authn_context_class_ref=class_ref,
        signed_element=signed,
    )


def _check_conditions(assertion: etree._Element, expect: SamlExpectations) -> datetime | None:
    """saml-core-2.0-os §2.5.1: the validity window, the audience, and no unknown condition."""
    found = assertion.findall(_saml("Conditions"))
    if len(found) != 1:
        _fail(
            f"the Assertion has {len(found)} Conditions; one, with an AudienceRestriction, is needed", "wrong_audience"
        )
    conditions = found[0]
    not_on_or_after = _optional_instant(conditions, "NotOnOrAfter", "Conditions")
    not_before = _optional_instant(conditions, "NotBefore", "Conditions")
    _within(expect, "the assertion's validity", not_before=not_before, not_on_or_after=not_on_or_after)
    restrictions = conditions.findall(_saml("AudienceRestriction"))
    if not restrictions:
        _fail("the Assertion has no AudienceRestriction (saml-profiles-2.0-os §4.1.4.2)", "wrong_audience")
    for restriction in restrictions:
        audiences = [_text(a, "Audience") for a in restriction.findall(_saml("Audience"))]
        if expect.sp_entity_id not in audiences:
            shown = ", ".join(f'"{_shown(a)}"' for a in audiences) or "nobody"
            _fail(f"the assertion is meant for {shown}, not for {expect.sp_entity_id}", "wrong_audience")
    unknown = [
        etree.QName(c).localname for c in conditions if isinstance(c.tag, str) and c.tag not in _KNOWN_CONDITIONS
    ]
    if unknown:
        _fail(
            f"the Assertion has a condition Keyhall does not understand ({unknown[0]}), so it is not valid "
            "(saml-core-2.0-os §2.5.1)",
            "malformed",
        )
    return not_on_or_after


def _name_id(assertion: etree._Element) -> tuple[str, str | None, etree._Element]:
    """saml-core-2.0-os §2.4.1, §2.2.3: the Subject, its NameID's whole text and Format."""
    subjects = assertion.findall(_saml("Subject"))
    if len(subjects) != 1:
        _fail(f"the Assertion has {len(subjects)} Subjects; exactly one is required", "missing_subject")
    name_ids = subjects[0].findall(_saml("NameID"))
    if len(name_ids) != 1:
        encrypted = subjects[0].find(_saml("EncryptedID")) is not None
        _fail(
            f"the Subject has {'an encrypted NameID, not supported' if encrypted else 'no NameID'}", "missing_subject"
        )
    value = _text(name_ids[0], "NameID")
    if not value:
        _fail("the Subject's NameID is empty", "missing_subject")
    return value, name_ids[0].get("Format"), subjects[0]


def _confirm_bearer(
    subject: etree._Element, response: etree._Element, expect: SamlExpectations
) -> tuple[datetime, str | None]:
    """saml-profiles-2.0-os §4.1.4.2-§4.1.4.3: one bearer SubjectConfirmation must hold entirely.

    Returns its NotOnOrAfter and InResponseTo; when none holds, the first one's failure is raised.
    """
    answered = response.get("InResponseTo")
    if answered is not None and answered != expect.request_id:
        _in_response_to_mismatch(answered, expect)
    bearers = [sc for sc in subject.findall(_saml("SubjectConfirmation")) if sc.get("Method") == BEARER]
    if not bearers:
        _fail("the Subject has no bearer SubjectConfirmation (saml-profiles-2.0-os §4.1.4.2)", "missing_subject")
    failures: list[SamlResponseError] = []
    for bearer in bearers:
        try:
            return _confirmation(bearer, expect)
        except SamlResponseError as exc:
            failures.append(exc)
    raise failures[0]


def _confirmation(bearer: etree._Element, expect: SamlExpectations) -> tuple[datetime, str | None]:
    found = bearer.findall(_saml("SubjectConfirmationData"))
    recipient = found[0].get("Recipient") if len(found) == 1 else None
    if recipient != expect.acs_url:
        shown = f'"{_shown(recipient)}"' if recipient is not None else "no Recipient"
        _fail(f"the subject confirmation names {shown}, not {expect.acs_url}", "wrong_recipient")
    data = found[0]
    not_on_or_after = _instant(data, "NotOnOrAfter", "SubjectConfirmationData")
    not_before = _optional_instant(data, "NotBefore", "SubjectConfirmationData")
    _within(expect, "the subject confirmation", not_before=not_before, not_on_or_after=not_on_or_after)
    in_response_to = data.get("InResponseTo")
    if in_response_to != expect.request_id:
        _in_response_to_mismatch(in_response_to, expect)
    if in_response_to is None and not expect.allow_idp_initiated:
        _fail("the response was not requested by Keyhall (IdP-initiated), which this connection refuses", "unsolicited")
    return not_on_or_after, in_response_to


def _in_response_to_mismatch(received: str | None, expect: SamlExpectations) -> NoReturn:
    if received is None:
        message = "the response does not say which request it answers (no InResponseTo)"
    else:
        which = "which Keyhall has no record of" if expect.request_id is None else "not the one Keyhall sent"
        message = f'the response answers request "{_shown(received)}", {which}'
    _fail(message, "in_response_to_mismatch")


def _authn_statement(assertion: etree._Element, expect: SamlExpectations) -> tuple[str | None, datetime, str | None]:
    """saml-core-2.0-os §2.7.2 (profiles §4.1.4.2 requires one): SessionIndex, AuthnInstant, ClassRef."""
    statement = assertion.find(_saml("AuthnStatement"))
    if statement is None:
        _fail("the Assertion has no AuthnStatement (saml-profiles-2.0-os §4.1.4.2)", "malformed")
    session_end = _optional_instant(statement, "SessionNotOnOrAfter", "AuthnStatement")
    _within(expect, "the IdP session's SessionNotOnOrAfter", not_on_or_after=session_end)
    authn_instant = _instant(statement, "AuthnInstant", "AuthnStatement")
    _within(expect, "the AuthnStatement's AuthnInstant", not_before=authn_instant)
    ref = statement.find(f"{_saml('AuthnContext')}/{_saml('AuthnContextClassRef')}")  # §2.7.2.2, optional
    class_ref = _text(ref, "AuthnContextClassRef") or None if ref is not None else None
    return statement.get("SessionIndex"), authn_instant, class_ref


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    """saml-core-2.0-os §2.7.3: every Attribute by Name, values' whole text, nil values skipped."""
    attributes: dict[str, list[str]] = {}
    for attribute in assertion.iterfind(f"{_saml('AttributeStatement')}/{_saml('Attribute')}"):
        name = attribute.get("Name")
        if not name:
            _fail("an Attribute has no Name", "malformed")
        values = attributes.setdefault(name, [])
        for value in attribute.findall(_saml("AttributeValue")):
            if value.get(f"{{{XSI_NS}}}nil") not in ("true", "1"):
                values.append(_text(value))
    return attributes
