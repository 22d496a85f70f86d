"""Enveloped XML signatures on SAML elements: xmlsec checks the cryptography, Keyhall decides trust.

Implements the receiving side of XML Signature 1.1 (xmldsig-core1 §3.2, core validation) as
profiled by saml-core-2.0-os §5.4: a SAML signature is an enveloped ``<ds:Signature>`` that is a
direct child of the signed ``<samlp:Response>`` or ``<saml:Assertion>`` (§5.4.1), with exactly
one ``<ds:Reference>`` whose URI is ``#`` + that element's ``ID`` (§5.4.2), the
enveloped-signature transform and Exclusive Canonicalization only (§5.4.3, §5.4.4).

What is trusted is decided here, in plain code, before xmlsec runs:

1. the signature's shape (xmldsig-core1 §4.2-§4.4): SignedInfo, SignatureValue, optional KeyInfo,
   nothing else (a ``<ds:Object>`` is where wrapping attacks hide the signed original); one
   Reference, to the element holding the signature; transforms enveloped-signature then,
   optionally, exclusive c14n (``signature_wrapping``);
2. algorithms: exc-c14n; RSA or ECDSA with SHA-256/384/512 (RFC 9231 §2.3); digests SHA-256/384/512
   (``algorithm_not_allowed``); SHA-1 only when allowed (``sha1_refused``); HMAC, DSA, MD5 never;
3. IDs: the signed element's ID is an xs:ID no other element carries, and the only attribute
   registered as an ID for xmlsec; in a Response, assertions and signatures sit only where
   saml-core-2.0-os §5.4.1 puts them (:func:`refuse_wrapping`) (``signature_wrapping``).

xmlsec then verifies with each *pinned* certificate's public key, its transforms restricted to
the algorithms above; ``<ds:KeyInfo>`` never supplies a key, and pinned certificates' dates are not
judged (pinning trusts the key; metadata checks report expiry). When no pinned key verifies, a
KeyInfo certificate only says *why*: if it verifies, a key we do not trust signed
(``untrusted_certificate``); otherwise the signature is wrong (``bad_signature``). The caller
reads data only from ``VerifiedSignature.element``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from keyhall.errors import CertificateError, SamlReason, SamlResponseError
from keyhall.protocols.saml.certificates import CertificateInfo, parse_certificate

if TYPE_CHECKING:
    from xmlsec.constants import __Transform as Transform

__all__ = [
    "DS_NS",
    "SignatureShape",
    "VerifiedSignature",
    "enveloped_signature",
    "inspect_signature",
    "pinned_keys",
    "refuse_wrapping",
    "require_unique_ids",
    "verify_enveloped_signature",
]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_C = xmlsec.constants

#: Signature methods accepted (RFC 9231 §2.3.2, §2.3.6) and the xmlsec transform for each.
SIGNATURE_METHODS: dict[str, Transform] = {
    t.href: t
    for t in (
        _C.TransformRsaSha256,
        _C.TransformRsaSha384,
        _C.TransformRsaSha512,
        _C.TransformEcdsaSha256,
        _C.TransformEcdsaSha384,
        _C.TransformEcdsaSha512,
    )
}
#: Digest methods accepted (xmlenc-core1 §5.7.2, RFC 9231 §2.1.3).
DIGEST_METHODS: dict[str, Transform] = {t.href: t for t in (_C.TransformSha256, _C.TransformSha384, _C.TransformSha512)}
#: SHA-1 variants (xmldsig-core1 §6.2.1, §6.4.2), accepted only with ``allow_sha1``.
SHA1_SIGNATURE_METHODS: dict[str, Transform] = {t.href: t for t in (_C.TransformRsaSha1, _C.TransformEcdsaSha1)}
SHA1_DIGEST_METHODS: dict[str, Transform] = {_C.TransformSha1.href: _C.TransformSha1}

# xs:ID is an NCName (XML Schema Part 2 §3.3.8); SAML IDs are ASCII in practice.
_NCNAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9._-]{0,255}\Z")
# Attributes that some XML vocabulary treats as an ID (SAML 2.0 ``ID``, SAML 1.x ``AssertionID``/
# ``ResponseID``, XML-DSig/XML-Enc ``Id``, ``xml:id``): no two elements may share a value.
_ID_ATTRIBUTE_NAMES = frozenset({"ID", "Id", "id", "AssertionID", "ResponseID"})  # in any namespace
_INCLUSIVE_NAMESPACES = f"{{{EXC_C14N}}}InclusiveNamespaces"  # xml-exc-c14n §3: the PrefixList parameter
_MAX_SHOWN = 120
_RESPONSE = "{urn:oasis:names:tc:SAML:2.0:protocol}Response"
_ASSERTION = "{urn:oasis:names:tc:SAML:2.0:assertion}Assertion"
_SIGNATURE = f"{{{DS_NS}}}Signature"
_WATCHED = frozenset({_RESPONSE, _ASSERTION, "{urn:oasis:names:tc:SAML:2.0:assertion}EncryptedAssertion", _SIGNATURE})
_MAX_DIAGNOSED_CERTIFICATE = 8192  # bytes of DER: no 16384-bit key gets a free verification
_TRANSFORMS: dict[str, Transform] = {
    ENVELOPED: _C.TransformEnveloped,
    EXC_C14N: _C.TransformExclC14N,
    **SIGNATURE_METHODS,
    **SHA1_SIGNATURE_METHODS,
    **DIGEST_METHODS,
    **SHA1_DIGEST_METHODS,
}


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


@dataclass(frozen=True)
class SignatureShape:
    """The algorithms of a signature that passed the policy checks."""

    signature_method: str
    digest_method: str
    transforms: tuple[str, ...]


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that xmlsec verified with a pinned key.

    ``element`` is the very object the signature covers: data must be read from it, and from
    nothing found by searching the document again.
    """

    element: etree._Element
    shape: SignatureShape
    certificate: CertificateInfo


@dataclass(frozen=True)
class _PinnedKey:
    info: CertificateInfo
    key: xmlsec.Key


def _fail(message: str, reason: SamlReason) -> NoReturn:
    raise SamlResponseError(message, reason=reason)


def _clip(text: object) -> str:
    shown = str(text)
    return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 3] + "..."


def _name(element: etree._Element) -> str:
    return etree.QName(element).localname


def _children(element: etree._Element) -> list[etree._Element]:
    """Element children only: comments and processing instructions are not structure."""
    return [child for child in element if isinstance(child.tag, str)]


def enveloped_signature(element: etree._Element) -> etree._Element | None:
    """The ``<ds:Signature>`` that is a direct child of ``element`` (saml-core-2.0-os §5.4.1).

    None when unsigned; ``signature_wrapping`` when there are several.
    """
    signatures = element.findall(_ds("Signature"))
    if len(signatures) > 1:
        _fail(f"the {_name(element)} carries {len(signatures)} signatures; one is allowed", "signature_wrapping")
    return signatures[0] if signatures else None


def _id_attributes(root: etree._Element) -> list[tuple[str, etree._Element]]:
    """Every (value, element) of an ID-like attribute in the document, in document order."""
    found: list[tuple[str, etree._Element]] = []
    for element in root.iter(etree.Element):
        for name, value in element.items():
            if name in _ID_ATTRIBUTE_NAMES or (
                str(name)[:1] == "{" and str(name).rpartition("}")[2] in _ID_ATTRIBUTE_NAMES
            ):
                found.append((str(value), element))
    return found


def require_unique_ids(root: etree._Element) -> None:
    """Refuse a document in which two elements carry the same ID value (XML 1.0 §3.3.1
    "Validity constraint: ID", xml:id 1.0 §4): a duplicate is how a signature is made to point at
    one element while the reader looks at another (``signature_wrapping``)."""
    seen: set[str] = set()
    for value, _ in _id_attributes(root):
        if value in seen:
            _fail(
                f'two elements carry the ID "{_clip(value)}": the signature could cover one and the data '
                "come from the other",
                "signature_wrapping",
            )
        seen.add(value)


def refuse_wrapping(response: etree._Element, decrypted: etree._Element | None = None) -> None:
    """Refuse duplicate IDs, and any assertion or response that is not the Response's direct child,
    and any signature not directly on the Response or on such an assertion (``signature_wrapping``):
    content that a signature check and a reader would see differently. ``decrypted`` is the
    Assertion decrypted inside an EncryptedAssertion, which is allowed where it is."""
    require_unique_ids(response)
    # Tags are compared as text: ``iter(tag)`` matches names through the document's dictionary,
    # and nodes that xmlsec creates are not bound to be in it.
    for element in response.iter(etree.Element):
        if element.tag not in _WATCHED or element is response or element is decrypted:
            continue
        parent = element.getparent()
        if element.tag == _SIGNATURE:
            on_assertion = parent is not None and parent.tag == _ASSERTION and parent.getparent() is response
            if parent is response or parent is decrypted or on_assertion:
                continue
        elif element.tag != _RESPONSE and parent is response:
            continue
        _fail(
            f"a {_name(element)} element sits inside {_name(parent) if parent is not None else 'nothing'}: only "
            "the Response's own assertion, and signatures directly on it or on the Response, are allowed",
            "signature_wrapping",
        )


def _single(parent: etree._Element, name: str, *, reason: SamlReason = "signature_wrapping") -> etree._Element:
    found = parent.findall(_ds(name))
    if len(found) != 1:
        _fail(f"the signature's {_name(parent)} must hold exactly one {name}, not {len(found)}", reason)
    return found[0]


def _algorithm(element: etree._Element) -> str:
    return (element.get("Algorithm") or "").strip()


def _check_layout(signature: etree._Element) -> None:
    """xmldsig-core1 §4.2: SignedInfo, SignatureValue, KeyInfo? — and no Object, ever."""
    names = [child.tag for child in _children(signature)]
    allowed = ([_ds("SignedInfo"), _ds("SignatureValue")], [_ds("SignedInfo"), _ds("SignatureValue"), _ds("KeyInfo")])
    if names not in allowed:
        shown = ", ".join(etree.QName(tag).localname for tag in names) or "nothing"
        _fail(
            f"the signature holds {shown}; only SignedInfo, SignatureValue and KeyInfo are allowed "
            "(a ds:Object is where wrapped content hides)",
            "signature_wrapping",
        )


def _signature_method(signed_info: etree._Element, allow_sha1: bool) -> str:
    canonicalization = _algorithm(_single(signed_info, "CanonicalizationMethod"))
    if canonicalization != EXC_C14N:
        _fail(
            f'canonicalization "{_clip(canonicalization)}" is not allowed; SAML signatures use exclusive '
            "canonicalization (saml-core-2.0-os §5.4.3)",
            "algorithm_not_allowed",
        )
    method_element = _single(signed_info, "SignatureMethod")
    method = _algorithm(method_element)
    if method in SHA1_SIGNATURE_METHODS and not allow_sha1:
        _fail(f'the signature uses SHA-1 ("{method}"); SHA-1 is refused, the IdP must sign with SHA-2', "sha1_refused")
    if method not in SIGNATURE_METHODS and method not in SHA1_SIGNATURE_METHODS:
        _fail(
            f'signature method "{_clip(method)}" is not allowed (accepted: RSA or ECDSA with SHA-256, -384, -512)',
            "algorithm_not_allowed",
        )
    if _children(method_element):  # HMACOutputLength and friends (CVE-2009-0217)
        _fail("the SignatureMethod carries parameters; none are allowed", "algorithm_not_allowed")
    return method


def _transforms(reference: etree._Element) -> tuple[str, ...]:
    """saml-core-2.0-os §5.4.4: enveloped-signature, then optionally exclusive c14n."""
    containers = reference.findall(_ds("Transforms"))
    if len(containers) != 1:
        _fail("the signature's Reference must list its transforms (enveloped-signature)", "signature_wrapping")
    transforms = _children(containers[0])
    algorithms = tuple(_algorithm(t) if t.tag == _ds("Transform") else "" for t in transforms)
    if algorithms not in ((ENVELOPED,), (ENVELOPED, EXC_C14N)):
        shown = ", ".join(_clip(a) or "?" for a in algorithms) or "none"
        _fail(
            f"the signature's transforms are [{shown}]; only enveloped-signature followed by exclusive "
            "canonicalization are allowed (saml-core-2.0-os §5.4.4)",
            "signature_wrapping",
        )
    if _children(transforms[0]) or any(
        child.tag != _INCLUSIVE_NAMESPACES for t in transforms[1:] for child in _children(t)
    ):
        _fail("a transform of the signature carries unexpected parameters (XPath?)", "signature_wrapping")
    return algorithms


def _digest_method(reference: etree._Element, allow_sha1: bool) -> str:
    method = _algorithm(_single(reference, "DigestMethod"))
    _single(reference, "DigestValue")
    if method in SHA1_DIGEST_METHODS and not allow_sha1:
        _fail("the signature digests with SHA-1, which is refused; the IdP must use SHA-256", "sha1_refused")
    if method not in DIGEST_METHODS and method not in SHA1_DIGEST_METHODS:
        _fail(f'digest method "{_clip(method)}" is not allowed (accepted: SHA-256/384/512)', "algorithm_not_allowed")
    return method


def inspect_signature(element: etree._Element, signature: etree._Element, *, allow_sha1: bool) -> SignatureShape:
    """Check a signature's structure and algorithms against the SAML profile (see the module doc).

    Nothing cryptographic happens here; raises ``SamlResponseError``.
    """
    _check_layout(signature)
    signed_info = _single(signature, "SignedInfo")
    names = [child.tag for child in _children(signed_info)]
    if names != [_ds("CanonicalizationMethod"), _ds("SignatureMethod"), _ds("Reference")]:
        shown = ", ".join(etree.QName(tag).localname for tag in names) or "nothing"
        _fail(
            f"the signature's SignedInfo holds {shown}; it must hold CanonicalizationMethod, SignatureMethod "
            "and exactly one Reference (saml-core-2.0-os §5.4.2)",
            "signature_wrapping",
        )
    signature_method = _signature_method(signed_info, allow_sha1)
    reference = signed_info.find(_ds("Reference"))
    assert reference is not None  # checked just above
    element_id = element.get("ID")
    if element_id is None or not _NCNAME.fullmatch(element_id):
        _fail(f"the signed {_name(element)} has no valid ID attribute (xs:ID)", "malformed")
    uri = reference.get("URI")
    if uri != f"#{element_id}":
        _fail(
            f'the {_name(element)}\'s signature covers "{_clip(uri)}", not the {_name(element)} itself '
            f'("#{element_id}")',
            "signature_wrapping",
        )
    transforms = _transforms(reference)
    digest_method = _digest_method(reference, allow_sha1)
    return SignatureShape(signature_method, digest_method, transforms)


@functools.lru_cache(maxsize=64)
def pinned_keys(certificates: tuple[str, ...]) -> tuple[_PinnedKey, ...]:
    """The verification keys of pinned IdP certificates, parsed once per distinct set.

    Raises :class:`~keyhall.errors.CertificateError` for an unusable certificate: that is a
    configuration problem, not a failed sign-in.
    """
    keys: list[_PinnedKey] = []
    for index, text in enumerate(certificates):
        info = parse_certificate(text, field=f"certificates[{index}]")
        # The bare public key (SubjectPublicKeyInfo): pinning trusts the key, and xmlsec copies
        # a bare key into each context far faster than a certificate-backed one.
        public_key = x509.load_pem_x509_certificate(info.pem.encode("ascii")).public_key()
        spki = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        try:
            keys.append(_PinnedKey(info, xmlsec.Key.from_memory(spki, _C.KeyDataFormatPem, None)))
        except xmlsec.Error:
            raise CertificateError(
                f"certificates[{index}]: its {info.key_type} key cannot verify SAML signatures; use RSA or EC",
                field="certificates",
                details={"reason": "unsupported_key", "index": index},
            ) from None
    return tuple(keys)


def _key_info_certificate(signature: etree._Element) -> bytes | None:
    """The DER of the first certificate in the signature's KeyInfo (xmldsig-core1 §4.5.4), if any."""
    found = signature.find(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}")
    if found is None:
        return None
    try:
        return base64.b64decode("".join((found.text or "").split()), validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).digest().hex(":").upper()


def _verifies(element: etree._Element, signature: etree._Element, key: xmlsec.Key, shape: SignatureShape) -> bool:
    context = xmlsec.SignatureContext()
    for href in (*shape.transforms, shape.digest_method):
        context.enable_reference_transform(_TRANSFORMS[href])
    for href in (EXC_C14N, shape.signature_method):
        context.enable_signature_transform(_TRANSFORMS[href])
    context.key = key
    try:
        # Only the signed element's own ID attribute becomes an ID (no DTD declares any other).
        context.register_id(element, "ID")
        context.verify(signature)
    except xmlsec.Error:
        return False
    return True


def verify_enveloped_signature(
    element: etree._Element,
    signature: etree._Element,
    *,
    certificates: Sequence[str],
    allow_sha1: bool = False,
) -> VerifiedSignature:
    """Verify ``signature``, a direct child of ``element``, with the pinned ``certificates`` only.

    Runs :func:`inspect_signature`, makes sure no other element of the document carries the
    signed element's ID, then asks xmlsec (restricted to the inspected algorithms) to verify with
    each pinned key — first the one whose certificate the signature names, if any. Raises
    ``SamlResponseError`` (``untrusted_certificate``, ``bad_signature``, or a policy reason).
    """
    if signature.getparent() is not element:
        raise ValueError("the signature must be a direct child of the element it signs")
    if not certificates:
        raise ValueError("at least one pinned IdP certificate is required")
    shape = inspect_signature(element, signature, allow_sha1=allow_sha1)
    element_id = element.get("ID")
    holders = [holder for value, holder in _id_attributes(element.getroottree().getroot()) if value == element_id]
    if holders != [element]:
        _fail(f'the ID "{element_id}" of the signed {_name(element)} is not unique', "signature_wrapping")
    keys = pinned_keys(tuple(certificates))
    offered = _key_info_certificate(signature)
    offered_fingerprint = _fingerprint(offered) if offered is not None else None
    for pinned in sorted(keys, key=lambda k: k.info.sha256_fingerprint != offered_fingerprint):
        if _verifies(element, signature, pinned.key, shape):
            return VerifiedSignature(element, shape, pinned.info)
    what = f"the {_name(element)}'s signature"
    pinned_fingerprints = {k.info.sha256_fingerprint for k in keys}
    if (
        offered is not None
        and len(offered) <= _MAX_DIAGNOSED_CERTIFICATE
        and offered_fingerprint not in pinned_fingerprints
    ):
        try:
            foreign = xmlsec.Key.from_memory(offered, _C.KeyDataFormatCertDer, None)
        except xmlsec.Error:
            foreign = None
        if foreign is not None and _verifies(element, signature, foreign, shape):
            _fail(
                f"{what} was made with a key that is not among the identity provider's pinned certificates "
                f"(the signer's certificate has SHA-256 fingerprint {offered_fingerprint})",
                "untrusted_certificate",
            )
    _fail(f"{what} does not verify with the identity provider's pinned certificate(s)", "bad_signature")
