"""IdP certificates: parsing, strength checks and expiry (keyhall.protocols.saml.certificates)."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyhall.errors import CertificateError
from keyhall.protocols.saml.certificates import CertificateInfo, parse_certificate, parse_certificates
from tests.support.saml_material import make_certificate, pem_body, private_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FIELD = "saml.certificates"


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    return make_certificate("idp.example.com", not_before=NOW - timedelta(days=30), days_valid=365)[0]


def test_pem_certificate_is_described(rsa_pem: str) -> None:
    info = parse_certificate(rsa_pem, field=FIELD)

    reference = x509.load_pem_x509_certificate(rsa_pem.encode())
    assert info.subject == "CN=idp.example.com"
    assert info.issuer == "CN=idp.example.com"
    assert int(info.serial, 16) == reference.serial_number
    assert len(info.serial) % 2 == 0
    assert info.serial == info.serial.upper()
    assert info.not_before == NOW - timedelta(days=30)
    assert info.not_after == NOW + timedelta(days=335)
    assert info.sha256_fingerprint == reference.fingerprint(hashes.SHA256()).hex(":").upper()
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", info.sha256_fingerprint)
    assert info.key_type == "RSA-2048"
    assert info.pem == rsa_pem


def test_bare_base64_body_with_stray_whitespace_is_accepted(rsa_pem: str) -> None:
    body = pem_body(rsa_pem)
    messy = "\n\t  " + "\r\n   ".join(body[i : i + 64] for i in range(0, len(body), 64)) + "  \n"

    assert parse_certificate(messy, field=FIELD) == parse_certificate(rsa_pem, field=FIELD)


def test_base64_without_padding_is_accepted(rsa_pem: str) -> None:
    body = pem_body(rsa_pem).rstrip("=")

    assert parse_certificate(body, field=FIELD).subject == "CN=idp.example.com"


def test_indented_pem_with_crlf_and_surrounding_text_is_accepted(rsa_pem: str) -> None:
    pasted = "Signing certificate:\r\n" + "\r\n".join("    " + line for line in rsa_pem.splitlines())

    assert parse_certificate(pasted, field=FIELD).key_type == "RSA-2048"


def test_ec_p256_certificate_is_named() -> None:
    pem, _ = make_certificate("ec.example.com", key_type="ec256", not_before=NOW, days_valid=10)

    assert parse_certificate(pem, field=FIELD).key_type == "EC-P256"


def test_ec_curve_outside_the_nist_ones_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k1.example.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )

    with pytest.raises(CertificateError) as caught:
        parse_certificate(certificate.public_bytes(serialization.Encoding.PEM).decode(), field=FIELD)

    assert caught.value.message == ("certificate's EC curve secp256k1 is not supported; use P-256, P-384 or P-521")


def test_valid_fixture_reports_days_left_and_iso_dates() -> None:
    info = parse_certificate((FIXTURES / "cert-valid.pem").read_text(), field=FIELD)

    report = info.as_dict(NOW)
    assert report["not_before"] == "2026-01-01T00:00:00Z"
    assert report["not_after"] == "2046-01-01T00:00:00Z"
    assert report["days_left"] == (datetime(2046, 1, 1, tzinfo=UTC) - NOW).days
    assert report["expired"] is False
    assert set(report) == {
        "subject",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "sha256_fingerprint",
        "key_type",
        "days_left",
        "expired",
    }
    assert json.loads(json.dumps(report)) == report


def test_expired_fixture_parses_and_is_reported_expired() -> None:
    info = parse_certificate((FIXTURES / "cert-expired.pem").read_text(), field=FIELD)

    assert info.not_after == datetime(2021, 1, 1, tzinfo=UTC)
    assert info.is_expired(NOW) is True
    assert info.days_left(NOW) < 0
    report = info.as_dict(NOW)
    assert report["expired"] is True
    assert report["days_left"] == -((NOW - datetime(2021, 1, 1, tzinfo=UTC)).days + 1)


def test_expiry_boundaries_follow_rfc5280_inclusive_not_after(rsa_pem: str) -> None:
    info = parse_certificate(rsa_pem, field=FIELD)

    assert info.days_left(info.not_after - timedelta(hours=12)) == 0
    assert info.is_expired(info.not_after) is False
    assert info.is_expired(info.not_after + timedelta(seconds=1)) is True
    assert info.days_left(info.not_after + timedelta(seconds=1)) == -1
    assert info.is_not_yet_valid(info.not_before - timedelta(seconds=1)) is True


def test_naive_now_is_a_programming_error(rsa_pem: str) -> None:
    info = parse_certificate(rsa_pem, field=FIELD)

    with pytest.raises(ValueError, match="timezone-aware"):
        info.days_left(datetime(2026, 12, 1))  # naive on purpose


def test_rsa_1024_is_refused() -> None:
    pem, _ = make_certificate("weak.example.com", key_type="rsa1024", not_before=NOW, days_valid=10)

    with pytest.raises(CertificateError) as caught:
        parse_certificate(pem, field=FIELD)

    assert caught.value.message == "certificate's RSA key is 1024 bits; at least 2048 are required"
    assert caught.value.details == {"reason": "weak_key", "key_type": "RSA-1024", "field": FIELD}


def test_private_key_pem_is_refused_without_echoing_it() -> None:
    _, key_pem = make_certificate("idp.example.com", not_before=NOW, days_valid=10)

    with pytest.raises(CertificateError) as caught:
        parse_certificate(key_pem, field=FIELD)

    error = caught.value
    assert "this is a private key, not a certificate" in error.message
    assert error.details == {"reason": "private_key", "field": FIELD}
    secret = pem_body(key_pem)
    for chunk in (secret[:40], secret[100:140], secret[-40:]):
        assert chunk not in str(error) + repr(error.details)


def test_private_key_base64_without_headers_is_recognised() -> None:
    _, key_pem = make_certificate("idp.example.com", key_type="ec256", not_before=NOW, days_valid=10)

    with pytest.raises(CertificateError, match="private key") as caught:
        parse_certificate(pem_body(key_pem), field=FIELD)

    assert pem_body(key_pem)[:30] not in str(caught.value)


def test_truncated_private_key_pem_still_says_private_key() -> None:
    _, key_pem = make_certificate("idp.example.com", not_before=NOW, days_valid=10)

    with pytest.raises(CertificateError, match="private key"):
        parse_certificate(key_pem.split("-----END")[0], field=FIELD)


def test_public_key_pem_is_named_as_not_a_certificate() -> None:
    public_pem = (
        private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    with pytest.raises(CertificateError) as caught:
        parse_certificate(public_pem, field=FIELD)

    assert caught.value.message == ("PEM holds a 'PUBLIC KEY', not a CERTIFICATE: give the IdP's X.509 certificate")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello, world!", "certificate is neither PEM nor base64-encoded DER"),
        ("   ", "certificate is empty"),
        (base64.b64encode(b"\x30\x03\x02\x01\x01" * 40).decode(), "not an X.509 certificate"),
        ("-----BEGIN CERTIFICATE-----\nMIIB", "certificate PEM is truncated"),
    ],
)
def test_garbage_is_refused(text: str, message: str) -> None:
    with pytest.raises(CertificateError, match=re.escape(message)) as caught:
        parse_certificate(text, field=FIELD)

    assert caught.value.field == FIELD


def test_two_certificates_in_one_entry_are_refused(rsa_pem: str) -> None:
    other, _ = make_certificate("other.example.com", not_before=NOW, days_valid=10)

    with pytest.raises(CertificateError, match="PEM holds 2 certificates; give one certificate per entry"):
        parse_certificate(rsa_pem + other, field=FIELD)


def test_oversized_text_is_refused() -> None:
    with pytest.raises(CertificateError, match="the limit is 65536"):
        parse_certificate("A" * 70_000, field=FIELD)


def test_parse_certificates_dedups_by_fingerprint_in_order(rsa_pem: str) -> None:
    other, _ = make_certificate("other.example.com", not_before=NOW, days_valid=10, key_slot=1)

    infos = parse_certificates([rsa_pem, other, pem_body(rsa_pem)], field=FIELD)

    assert [info.subject for info in infos] == ["CN=idp.example.com", "CN=other.example.com"]
    assert all(isinstance(info, CertificateInfo) for info in infos)


def test_parse_certificates_names_the_bad_entry(rsa_pem: str) -> None:
    with pytest.raises(CertificateError) as caught:
        parse_certificates([rsa_pem, "not a cert!"], field=FIELD)

    assert caught.value.message.startswith("saml.certificates[1]: certificate is neither PEM nor base64")
    assert caught.value.details["index"] == 1
    assert caught.value.field == FIELD
