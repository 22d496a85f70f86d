"""Decrypting a SAML ``<saml:EncryptedAssertion>`` with the service provider's private key.

saml-core-2.0-os §2.3.4 and §6 wrap an encrypted assertion as XML Encryption 1.1
(xmlenc-core1) ``<xenc:EncryptedData Type="...#Element">``, whose content key travels in one or
more ``<xenc:EncryptedKey>`` — inside the EncryptedData's ``<ds:KeyInfo>`` or beside it in the
EncryptedAssertion (§6.2). xmlsec does the cryptography; this module decides what it may do:

- content encryption: AES-128/256-GCM (xmlenc-core1 §5.2.4) or AES-128/256-CBC (§5.2.2) —
  nothing else (``algorithm_not_allowed``);
- key transport: RSA-OAEP (§5.5.2, both the ``rsa-oaep-mgf1p`` and the 1.1 ``rsa-oaep``
  identifiers). RSA PKCS#1 v1.5 (§5.5.1) is refused before any private-key operation, because
  its padding oracle (Bleichenbacher; Jager, Schinzel, Somorovsky 2012) would let an attacker
  decrypt captured assertions (``algorithm_not_allowed``);
- ciphertext by value only: a ``<xenc:CipherReference>`` would make xmlsec fetch a URI
  (``malformed``);
- keys are never looked up from ``<ds:KeyInfo>``: the SP key decrypts the EncryptedKey, the key
  so recovered (of exactly the length the algorithm needs) decrypts the EncryptedData, and each
  failure is the same ``decryption_failed`` with the same message, so that nothing distinguishes
  a padding error from a parse error.

AES-CBC is not authenticated: unless a verified Response signature covers the ciphertext,
:func:`open_encrypted_assertion` reports every failure up to and including the decrypted
assertion's own signature check as the same ``decryption_failed``; a distinct reason would be an
oracle on the plaintext (Jager and Somorovsky, "How to Break XML Encryption", CCS 2011). The
cause stays chained (``__cause__``) for server logs.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import xmlsec
from lxml import etree

from keyhall.errors import SamlReason, SamlResponseError

__all__ = [
    "AUTHENTICATED_ALGORITHMS",
    "DATA_ALGORITHMS",
    "KEY_TRANSPORT_ALGORITHMS",
    "RSA_1_5",
    "XENC_NS",
    "EncryptionShape",
    "decrypt_assertion",
    "inspect_encrypted_assertion",
    "open_encrypted_assertion",
]

XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
XENC11_NS = "http://www.w3.org/2009/xmlenc11#"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
ELEMENT_TYPE = XENC_NS + "Element"
RSA_1_5 = XENC_NS + "rsa-1_5"
_C = xmlsec.constants

#: Content-encryption algorithms and their key lengths in bytes (xmlenc-core1 §5.2).
DATA_ALGORITHMS: dict[str, int] = {
    _C.TransformAes128Gcm.href: 16,
    _C.TransformAes256Gcm.href: 32,
    _C.TransformAes128Cbc.href: 16,
    _C.TransformAes256Cbc.href: 32,
}
AUTHENTICATED_ALGORITHMS = frozenset({_C.TransformAes128Gcm.href, _C.TransformAes256Gcm.href})
KEY_TRANSPORT_ALGORITHMS = frozenset({XENC_NS + "rsa-oaep-mgf1p", XENC11_NS + "rsa-oaep"})
_MAX_ENCRYPTED_KEYS = 4
_T = TypeVar("_T")
_DECRYPTION_FAILED = (
    "the encrypted assertion could not be decrypted with the service provider's key "
    "(wrong key, or the ciphertext was altered)"
)


@dataclass(frozen=True)
class EncryptionShape:
    """An EncryptedAssertion whose algorithms passed the policy checks, ready to decrypt."""

    data_algorithm: str
    encrypted_data: etree._Element
    encrypted_keys: tuple[etree._Element, ...]

    @property
    def authenticated(self) -> bool:
        """Whether decryption itself proves the ciphertext unaltered (AES-GCM's tag)."""
        return self.data_algorithm in AUTHENTICATED_ALGORITHMS


def _xenc(name: str) -> str:
    return f"{{{XENC_NS}}}{name}"


def _fail(message: str, reason: SamlReason) -> NoReturn:
    raise SamlResponseError(message, reason=reason)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _method(element: etree._Element) -> str:
    methods = element.findall(_xenc("EncryptionMethod"))
    if len(methods) != 1:
        _fail(f"an {etree.QName(element).localname} must name exactly one EncryptionMethod", "malformed")
    return (methods[0].get("Algorithm") or "").strip()


def _require_cipher_value(element: etree._Element) -> None:
    """xmlenc-core1 §3.3: CipherData holds a CipherValue, or a CipherReference we refuse to follow."""
    values = element.findall(f"{_xenc('CipherData')}/{_xenc('CipherValue')}")
    if len(element.findall(_xenc("CipherData"))) != 1 or len(values) != 1:
        _fail(
            f"an {etree.QName(element).localname} must carry its ciphertext by value (one CipherValue); "
            "CipherReference is not followed",
            "malformed",
        )


def inspect_encrypted_assertion(encrypted_assertion: etree._Element) -> EncryptionShape:
    """Check an EncryptedAssertion's layout and algorithms (see the module doc); no cryptography."""
    children = [child for child in encrypted_assertion if isinstance(child.tag, str)]
    data = [child for child in children if child.tag == _xenc("EncryptedData")]
    siblings = [child for child in children if child.tag == _xenc("EncryptedKey")]
    if len(data) != 1 or len(data) + len(siblings) != len(children):
        _fail(
            "an EncryptedAssertion must hold one EncryptedData and optional EncryptedKeys (saml-core-2.0-os §2.3.4)",
            "malformed",
        )
    encrypted_data = data[0]
    kind = encrypted_data.get("Type")
    if kind is not None and kind != ELEMENT_TYPE:
        _fail(f'the EncryptedData has Type "{_clip(kind)}"; SAML requires {ELEMENT_TYPE} (§6.1)', "malformed")
    algorithm = _method(encrypted_data)
    if algorithm not in DATA_ALGORITHMS:
        _fail(
            f'content encryption "{_clip(algorithm)}" is not allowed (accepted: AES-128/256-GCM, AES-128/256-CBC)',
            "algorithm_not_allowed",
        )
    _require_cipher_value(encrypted_data)
    keys = (*encrypted_data.findall(f"{{{DS_NS}}}KeyInfo/{_xenc('EncryptedKey')}"), *siblings)
    if not keys:
        _fail("the encrypted assertion carries no EncryptedKey for the service provider", "decryption_failed")
    if len(keys) > _MAX_ENCRYPTED_KEYS:
        _fail(f"the encrypted assertion carries {len(keys)} EncryptedKeys; at most {_MAX_ENCRYPTED_KEYS}", "malformed")
    for key in keys:
        transport = _method(key)
        if transport == RSA_1_5:
            _fail(
                "the assertion's key is encrypted with RSA PKCS#1 v1.5 (rsa-1_5), which is refused as it is open to "
                "padding-oracle attacks; the IdP must use RSA-OAEP",
                "algorithm_not_allowed",
            )
        if transport not in KEY_TRANSPORT_ALGORITHMS:
            _fail(f'key transport "{_clip(transport)}" is not allowed (accepted: RSA-OAEP)', "algorithm_not_allowed")
        if key.get("Type") is not None:
            _fail("an EncryptedKey must not carry a Type: it holds a key, not XML", "malformed")
        _require_cipher_value(key)
    return EncryptionShape(algorithm, encrypted_data, tuple(keys))


@functools.lru_cache(maxsize=16)
def _sp_key(pem: str) -> xmlsec.Key:
    try:
        return xmlsec.Key.from_memory(pem, _C.KeyDataFormatPem, None)
    except xmlsec.Error:
        raise ValueError("the service provider's private key is not a PEM private key") from None


def _keys(sp_private_key: str | Sequence[str]) -> tuple[str, ...]:
    return (sp_private_key,) if isinstance(sp_private_key, str) else tuple(sp_private_key)


def _content_key(shape: EncryptionShape, sp_private_key: str | Sequence[str]) -> bytes:
    """Unwrap the content key from the first EncryptedKey an SP key opens (xmlenc-core1 §3.5.1);
    several SP keys are tried in order during an SP key rollover."""
    wanted = DATA_ALGORITHMS[shape.data_algorithm]
    for pem in _keys(sp_private_key):
        for encrypted_key in shape.encrypted_keys:
            context = xmlsec.EncryptionContext()
            context.key = _sp_key(pem)
            try:
                # A copy, so that decrypting can never put anything into the document itself.
                unwrapped: object = context.decrypt(copy.deepcopy(encrypted_key))
            except xmlsec.Error:
                continue
            if isinstance(unwrapped, bytes) and len(unwrapped) == wanted:
                return unwrapped
    _fail(_DECRYPTION_FAILED, "decryption_failed")


def decrypt_assertion(shape: EncryptionShape, sp_private_key: str | Sequence[str]) -> etree._Element:
    """Decrypt an inspected EncryptedAssertion in place and return the ``<saml:Assertion>`` it held.

    The plaintext replaces the EncryptedData inside the EncryptedAssertion, so it is parsed in
    the namespace context the IdP encrypted it in (xmlenc-core1 §4.3). It must be exactly one
    Assertion element. Raises ``SamlResponseError`` (``decryption_failed`` or ``malformed``);
    ``ValueError`` when ``sp_private_key`` is not a private key.
    """
    content_key = _content_key(shape, sp_private_key)
    encrypted_assertion = shape.encrypted_data.getparent()
    if encrypted_assertion is None:
        raise ValueError("the EncryptedData is not inside an EncryptedAssertion")
    if shape.encrypted_data.get("Type") is None:
        shape.encrypted_data.set("Type", ELEMENT_TYPE)  # what SAML means anyway; xmlsec then parses it
    context = xmlsec.EncryptionContext()
    context.key = xmlsec.Key.from_binary_data(_C.KeyDataAes, content_key)
    try:
        context.decrypt(shape.encrypted_data)
    except xmlsec.Error:
        _fail(_DECRYPTION_FAILED, "decryption_failed")
    plaintext = [child for child in encrypted_assertion if child.tag != _xenc("EncryptedKey")]
    if len(plaintext) != 1 or plaintext[0].tag != f"{{{SAML_NS}}}Assertion":
        _fail("the encrypted assertion did not decrypt to exactly one saml:Assertion element", "malformed")
    return plaintext[0]


def open_encrypted_assertion(
    encrypted_assertion: etree._Element,
    sp_private_key: str | Sequence[str] | None,
    *,
    ciphertext_signed: bool,
    then: Callable[[etree._Element], _T],
) -> tuple[etree._Element, _T]:
    """Inspect, decrypt and hand the Assertion to ``then`` (which checks and verifies it).

    ``ciphertext_signed`` says whether a verified Response signature covers the ciphertext.
    Unless it does, or the cipher is AES-GCM, any ``SamlResponseError`` from decryption or from
    ``then`` becomes one uniform ``decryption_failed`` (see the module doc).
    """
    shape = inspect_encrypted_assertion(encrypted_assertion)
    if not sp_private_key:
        _fail("the assertion is encrypted but no service provider private key is configured", "decryption_failed")
    try:
        assertion = decrypt_assertion(shape, sp_private_key)
        return assertion, then(assertion)
    except SamlResponseError as exc:
        if ciphertext_signed or shape.authenticated:
            raise
        raise SamlResponseError(_DECRYPTION_FAILED, reason="decryption_failed") from exc  # the same, always
