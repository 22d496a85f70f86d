"""The test IdP's keys, made on first use in the data directory (never shipped): the OIDC side's
RS256 JWK (``dev-idp-key.json``) and the SAML side's RSA key and self-signed certificate
(``dev-idp-saml.key``, ``dev-idp-saml.crt``). Each file is written whole or not at all (0600), and
a file another worker placed first wins, so a restart or another worker signs with the same key."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import RSAKey

from keyhall.security.private_files import create_private_file

KEY_FILE = "dev-idp-key.json"
SAML_KEY_FILE = "dev-idp-saml.key"
SAML_CERT_FILE = "dev-idp-saml.crt"
SAML_CERT_DAYS = 3650


def _place(path: Path, content: bytes) -> None:
    draft = path.parent / f".{path.name}.{secrets.token_hex(8)}"
    create_private_file(draft)
    draft.write_bytes(content)
    try:
        os.link(draft, path)  # whole or not at all; a file another worker placed first wins
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def load_key(data_dir: Path) -> RSAKey:
    """The OIDC side's signing key, created on first use."""
    path = data_dir / KEY_FILE
    if not path.exists():
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
        _place(path, json.dumps(key.as_dict(private=True)).encode())
    return RSAKey.import_key(json.loads(path.read_text()))


def saml_key_pair(data_dir: Path, common_name: str) -> tuple[Path, Path]:
    """The SAML side's key and certificate files (PEM), created on first use."""
    key_path, cert_path = data_dir / SAML_KEY_FILE, data_dir / SAML_CERT_FILE
    if not key_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _place(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    if not cert_path.exists():
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise TypeError(f"{key_path} holds no RSA private key")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(loaded.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=SAML_CERT_DAYS)).sign(loaded, hashes.SHA256()))
        _place(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
