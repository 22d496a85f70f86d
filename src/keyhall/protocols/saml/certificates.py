"""X.509 certificates of SAML identity providers.

An IdP's signing key reaches Keyhall as an X.509 certificate: pasted by an owner as PEM
(RFC 7468 §5), or found in metadata as the base64 body of ``<ds:X509Certificate>`` inside
``<md:KeyDescriptor><ds:KeyInfo><ds:X509Data>`` (saml-metadata-2.0-os §2.4.1.1; XML-DSig
§4.4.4). Both shapes are accepted here, with stray whitespace. Only the public key matters to
SAML (saml-metadata-2.0-os §2.4.1.1 leaves trust to the relying party), so the chain is not
built; but the key must be strong enough and the validity period (RFC 5280 §4.1.2.5) is
reported so that an owner sees an expiring certificate before logins break. An expired
certificate still parses: whether to accept it is the caller's decision.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from keyhall.errors import CertificateError

__all__ = [
    "MIN_RSA_BITS",
    "CertificateInfo",
    "isoformat_z",
    "parse_certificate",
    "parse_certificates",
]

MIN_RSA_BITS = 2048
_MAX_TEXT_CHARS = 65_536
_SECONDS_PER_DAY = 86_400

# RFC 7468 §3: "-----BEGIN label-----" ... "-----END label-----".
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_BOUNDARY = re.compile(r"-----(BEGIN|END) [^-]*-----")
_CERTIFICATE_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_BASE64 = re.compile(r"\A[A-Za-z0-9+/]+={0,2}\Z")
_WHITESPACE = re.compile(r"\s+")
_CURVE_NAMES = {"secp256r1": "EC-P256", "secp384r1": "EC-P384", "secp521r1": "EC-P521"}


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC)


def isoformat_z(moment: datetime) -> str:
    """Render an aware datetime as ISO 8601 UTC with a ``Z`` (RFC 3339 §5.6), to the second."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CertificateInfo:
    """What Keyhall reports about one certificate (RFC 5280 §4.1)."""

    pem: str
    subject: str  # RFC 4514 string of the subject name (RFC 5280 §4.1.2.6)
    issuer: str  # RFC 4514 string of the issuer name (RFC 5280 §4.1.2.4)
    serial: str  # serialNumber in upper-case hex (RFC 5280 §4.1.2.2)
    not_before: datetime  # aware, UTC (RFC 5280 §4.1.2.5)
    not_after: datetime  # aware, UTC; the certificate is valid through this instant
    sha256_fingerprint: str  # SHA-256 of the DER, "AB:CD:..."
    key_type: str  # "RSA-2048", "EC-P256", "Ed25519"...

    def days_left(self, now: datetime) -> int:
        """Whole days until notAfter (RFC 5280 §4.1.2.5); negative once expired."""
        seconds = (self.not_after - _utc(now)).total_seconds()
        return int(seconds // _SECONDS_PER_DAY)

    def is_expired(self, now: datetime) -> bool:
        """True after notAfter; the validity period includes notAfter itself (RFC 5280 §4.1.2.5)."""
        return _utc(now) > self.not_after

    def is_not_yet_valid(self, now: datetime) -> bool:
        """True before notBefore (RFC 5280 §4.1.2.5)."""
        return _utc(now) < self.not_before

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """The JSON-able report of this certificate as of ``now`` (the PEM is public but bulky)."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": isoformat_z(self.not_before),
            "not_after": isoformat_z(self.not_after),
            "sha256_fingerprint": self.sha256_fingerprint,
            "key_type": self.key_type,
            "days_left": self.days_left(now),
            "expired": self.is_expired(now),
        }


def _is_private_key(der: bytes) -> bool:
    """Whether DER bytes are a private key (PKCS #8 or traditional), without keeping it."""
    try:
        serialization.load_der_private_key(der, password=None)
    except TypeError:
        return True  # an encrypted private key: cryptography asks for the password
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _decode_base64(body: str, field: str) -> bytes:
    compact = _WHITESPACE.sub("", body)
    if not compact or not _BASE64.fullmatch(compact):
        raise CertificateError(
            "certificate is neither PEM nor base64-encoded DER",
            field=field,
            details={"reason": "not_base64"},
        )
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError(
            "certificate's base64 body is corrupt", field=field, details={"reason": "not_base64"}
        ) from None


def _der_from_text(text: str, field: str) -> bytes:
    """Extract the DER of exactly one certificate from PEM (RFC 7468 §5) or bare base64."""
    blocks = _PEM_BLOCK.findall(text)
    if not blocks:
        if _PEM_BOUNDARY.search(text):
            if "PRIVATE KEY" in text:
                raise _private_key_error(field)
            raise CertificateError(
                "certificate PEM is truncated: BEGIN and END lines do not match",
                field=field,
                details={"reason": "bad_pem"},
            )
        return _decode_base64(text, field)
    labels = [label for label, _ in blocks]
    if any("PRIVATE KEY" in label for label in labels):
        raise _private_key_error(field)
    certificates = [body for label, body in blocks if label in _CERTIFICATE_LABELS]
    if not certificates:
        raise CertificateError(
            f"PEM holds a {labels[0]!r}, not a CERTIFICATE: give the IdP's X.509 certificate",
            field=field,
            details={"reason": "not_a_certificate", "pem_label": labels[0]},
        )
    if len(certificates) > 1:
        raise CertificateError(
            f"PEM holds {len(certificates)} certificates; give one certificate per entry",
            field=field,
            details={"reason": "several_certificates", "count": len(certificates)},
        )
    return _decode_base64(certificates[0], field)


def _private_key_error(field: str) -> CertificateError:
    return CertificateError(
        "this is a private key, not a certificate: give the IdP's public X.509 certificate, "
        "and treat the private key you pasted as exposed",
        field=field,
        details={"reason": "private_key"},
    )


def _key_type(certificate: x509.Certificate, field: str) -> str:
    """Name the subject public key (RFC 5280 §4.1.2.7) and refuse weak or unusable ones."""
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(
            "certificate's public key algorithm is not supported",
            field=field,
            details={"reason": "unsupported_key"},
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateError(
                f"certificate's RSA key is {key.key_size} bits; at least {MIN_RSA_BITS} are required",
                field=field,
                details={"reason": "weak_key", "key_type": f"RSA-{key.key_size}"},
            )
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_NAMES:
            # XML-DSig ECDSA (RFC 9231 §2.3.6) is used with the NIST curves only.
            raise CertificateError(
                f"certificate's EC curve {key.curve.name} is not supported; use P-256, P-384 or P-521",
                field=field,
                details={"reason": "unsupported_key", "key_type": f"EC-{key.curve.name}"},
            )
        return _CURVE_NAMES[key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    name = "DSA" if isinstance(key, dsa.DSAPublicKey) else type(key).__name__
    raise CertificateError(
        f"certificate's {name} key cannot verify SAML signatures; use an RSA (2048+ bits) or EC key",
        field=field,
        details={"reason": "unsupported_key", "key_type": name},
    )


def parse_certificate(text: str, *, field: str) -> CertificateInfo:
    """Parse one X.509 certificate given as PEM or as bare base64 DER (XML-DSig §4.4.4).

    Raises :class:`CertificateError` naming ``field`` for anything that is not exactly one
    usable certificate: garbage, a private key (the key is never echoed), another PEM type, an
    RSA key under 2048 bits, a key that cannot sign. Expired certificates parse.
    """
    if len(text) > _MAX_TEXT_CHARS:
        raise CertificateError(
            f"certificate text is {len(text)} characters; the limit is {_MAX_TEXT_CHARS}",
            field=field,
            details={"reason": "too_large"},
        )
    if not text.strip():
        raise CertificateError("certificate is empty", field=field, details={"reason": "empty"})
    der = _der_from_text(text, field)
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        if _is_private_key(der):
            raise _private_key_error(field) from None
        raise CertificateError(
            "not an X.509 certificate: the DER structure could not be read",
            field=field,
            details={"reason": "not_a_certificate"},
        ) from None
    key_type = _key_type(certificate, field)
    serial = format(certificate.serial_number, "X")
    return CertificateInfo(
        pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=serial.zfill(len(serial) + len(serial) % 2),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        sha256_fingerprint=certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
        key_type=key_type,
    )


def parse_certificates(texts: Sequence[str], *, field: str) -> list[CertificateInfo]:
    """Parse several certificates, keeping the first of any that share a SHA-256 fingerprint.

    Errors name ``field`` and carry the entry's ``index`` in their details (and message).
    """
    parsed: list[CertificateInfo] = []
    seen: set[str] = set()
    for index, text in enumerate(texts):
        try:
            info = parse_certificate(text, field=field)
        except CertificateError as exc:
            raise CertificateError(
                f"{field}[{index}]: {exc.message}", field=field, details={**exc.details, "index": index}
            ) from None
        if info.sha256_fingerprint not in seen:
            seen.add(info.sha256_fingerprint)
            parsed.append(info)
    return parsed
