"""Keys of Keyhall as a SAML service provider: one self-signed RSA key pair per connection.

A service provider signs its ``<AuthnRequest>`` (saml-bindings-2.0-os §3.4.4.1, §3.5.4) and
may receive encrypted assertions (saml-core-2.0-os §6); the IdP learns the public halves from
the ``<md:KeyDescriptor>`` elements of the SP's metadata (saml-metadata-2.0-os §2.4.1.1). SAML
trusts the key, not a certificate chain, so a self-signed certificate (RFC 5280 §4.1) is the
usual carrier: RSA-2048 (the minimum Keyhall itself accepts from IdPs), signed with SHA-256.

The private key is returned as unencrypted PKCS #8 PEM (RFC 5208, RFC 7468 §10) for the caller
to seal with :mod:`keyhall.security.secrets` before it is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["CLOCK_SKEW", "MAX_COMMON_NAME_CHARS", "SP_KEY_BITS", "generate_sp_keypair"]

SP_KEY_BITS = 2048
# X.520 ub-common-name (RFC 5280 Appendix A.1): a CommonName holds at most 64 characters.
MAX_COMMON_NAME_CHARS = 64
# notBefore is set a little in the past so that an IdP whose clock runs behind does not see a
# certificate that is not yet valid (RFC 5280 §4.1.2.5).
CLOCK_SKEW = timedelta(minutes=5)


def _years_later(moment: datetime, years: int) -> datetime:
    """The same calendar instant ``years`` later; 29 February becomes 28 February when needed."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def generate_sp_keypair(common_name: str, *, now: datetime, years: int = 10) -> tuple[str, str]:
    """Make a self-signed SP certificate and its key, as ``(cert_pem, key_pem)``.

    RSA-2048 with e = 65537, signed with SHA-256 (sha256WithRSAEncryption, RFC 4055 §5). Subject
    and issuer are ``CN=common_name`` (cut to 64 characters, X.520 ub-common-name); the validity
    period (RFC 5280 §4.1.2.5) runs from ``now`` minus :data:`CLOCK_SKEW` to ``years`` calendar
    years after ``now``. Extensions: basicConstraints cA=false (critical, RFC 5280 §4.2.1.9),
    keyUsage digitalSignature + keyEncipherment (critical, §4.2.1.3; the latter lets the IdP
    encrypt assertion keys to it) and a subjectKeyIdentifier (§4.2.1.2).

    Raises ``ValueError`` for a naive ``now``, an empty common name or ``years`` < 1.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if years < 1:
        raise ValueError("years must be at least 1")
    name_text = common_name.strip()[:MAX_COMMON_NAME_CHARS]
    if not name_text:
        raise ValueError("common_name must not be empty")
    start = now.astimezone(UTC).replace(microsecond=0)
    key = rsa.generate_private_key(public_exponent=65537, key_size=SP_KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name_text)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(_years_later(start, years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return cert_pem, key_pem
