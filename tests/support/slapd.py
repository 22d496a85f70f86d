"""A real LDAP directory for the tests: OpenLDAP's ``slapd`` (Debian ``slapd`` and ``ldap-utils``).

``Slapd.start()`` writes a ``slapd.conf`` into a temporary directory (schemas core, cosine, nis
and inetorgperson; ``back_mdb``; the ``memberof`` overlay so that ``memberOf`` follows
``groupOfNames``; ACLs that let anyone bind, each user read their own entry and the service
account read everything), makes a test CA and a server certificate for ``127.0.0.1`` (an IP
SAN) with ``cryptography``, checks the configuration with ``slaptest -u``, runs ``slapd`` in the
foreground on two free ports (``ldap://`` with StartTLS, and ``ldaps://``), waits until it
accepts connections, and loads the entries with ``ldapadd`` (overlays do not run under
``slapadd``, so ``memberOf`` needs the server). ``stop()`` ends it by its PID.

slapd runs with ``-d 256`` (the ``stats`` log level): every operation the server received is in
``log()``, so a test can show which filter arrived, or that no bind was attempted.

Missing programs or a failed start go through ``peer_unavailable``: a failure in CI, a skip on
a developer's machine.

The directory (base ``dc=example,dc=test``):

- ``ou=people``: ``alice`` (in ``engineering`` and ``admins``), ``bob`` (in ``sales``),
  ``wild*card`` (a ``*`` in its uid), ``zoë`` (non-ASCII uid and password, in ``admins``); ``bob``
  and ``wild*card`` share the mail ``team@example.test`` (an ambiguous search by mail).
- ``ou=groups``: ``groupOfNames`` ``engineering``, ``admins``, ``sales``.
- ``ou=services``: ``cn=keyhall-svc``, the service account Keyhall searches with.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.peers import free_port, peer_unavailable

STARTUP_TIMEOUT = 15.0  # seconds; slapd is ready in about 0.3 s
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
PROGRAMS = ("slapd", "slaptest", "slappasswd", "ldapadd")
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")

BASE_DN = "dc=example,dc=test"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
SERVICE_DN = f"cn=keyhall-svc,ou=services,{BASE_DN}"
ROOT_DN = f"cn=admin,{BASE_DN}"

#: uid -> (cn, givenName, sn, mails)
PEOPLE: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "alice": ("Alice Archer", "Alice", "Archer", ("alice@example.test",)),
    "bob": ("Bob Baker", "Bob", "Baker", ("bob@example.test", "team@example.test")),
    "wild*card": ("Wanda Card", "Wanda", "Card", ("wild@example.test", "team@example.test")),
    "zoë": ("Zoë Zeller", "Zoë", "Zeller", ("zoe@example.test",)),
}
#: group cn -> member uids
GROUPS: dict[str, tuple[str, ...]] = {
    "engineering": ("alice",),
    "admins": ("alice", "zoë"),
    "sales": ("bob",),
}


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE_DN}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS_DN}"


@dataclass
class DirectoryCertificates:
    """A CA and the server certificate it issued (IP SAN 127.0.0.1, DNS localhost), plus an
    unrelated CA that a client may wrongly trust."""

    ca_pem: str
    server_pem: str
    server_key_pem: str
    other_ca_pem: str

    @classmethod
    def make(cls) -> DirectoryCertificates:
        ca_key, ca_cert = _ca("Keyhall Test LDAP CA")
        _other_key, other_cert = _ca("Some Other CA")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return cls(ca_pem=_pem(ca_cert), server_pem=_pem(server), server_key_pem=key_pem,
                   other_ca_pem=_pem(other_cert))


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ldif_line(name: str, value: str) -> str:
    """One LDIF attribute line (RFC 2849): base64 (``::``) unless the value is plain ASCII."""
    safe = value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<")) and not value.endswith(" ")
    if safe:
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def _entry(dn: str, attributes: list[tuple[str, str]]) -> str:
    return "\n".join([_ldif_line("dn", dn), *(_ldif_line(k, v) for k, v in attributes)]) + "\n"


def _which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path=":".join(SBIN_DIRS))


@dataclass
class Slapd:
    """One running slapd. ``port`` speaks plain LDAP (and StartTLS), ``ldaps_port`` LDAPS."""

    port: int
    ldaps_port: int
    certificates: DirectoryCertificates
    root_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    passwords: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    base_dn: str = BASE_DN
    people_dn: str = PEOPLE_DN
    groups_dn: str = GROUPS_DN
    service_dn: str = SERVICE_DN
    root_dn: str = ROOT_DN
    _workdir: tempfile.TemporaryDirectory[str] = field(
        default_factory=lambda: tempfile.TemporaryDirectory(prefix="keyhall-slapd-"))
    _process: subprocess.Popen[bytes] | None = None

    @property
    def ca_pem(self) -> str:
        return self.certificates.ca_pem

    @property
    def workdir(self) -> Path:
        return Path(self._workdir.name)

    @classmethod
    def start(cls) -> Slapd:
        programs = {name: _which(name) for name in PROGRAMS}
        missing = [name for name, path in programs.items() if path is None]
        if missing:
            peer_unavailable(f"{', '.join(missing)} not installed (Debian packages slapd and ldap-utils)")
        server = cls(port=free_port(), ldaps_port=free_port(), certificates=DirectoryCertificates.make())
        server.passwords = {uid: f"{uid}-{secrets.token_urlsafe(12)}" for uid in PEOPLE}
        server.passwords["zoë"] = f"pässwörd-{secrets.token_urlsafe(12)}"
        try:
            server._launch({name: str(path) for name, path in programs.items()})
        except BaseException:
            server.stop()
            raise
        return server

    def _hash(self, slappasswd: str, password: str) -> str:
        done = subprocess.run([slappasswd, "-h", "{SSHA}", "-s", password], capture_output=True, timeout=10,
                              check=False)
        if done.returncode != 0:
            peer_unavailable(f"slappasswd failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode().strip()

    def _config(self, slappasswd: str) -> str:
        work = self.workdir
        (work / "db").mkdir()
        (work / "ca.pem").write_text(self.certificates.ca_pem)
        (work / "server.pem").write_text(self.certificates.server_pem)
        (work / "server.key").write_text(self.certificates.server_key_pem)
        (work / "server.key").chmod(0o600)
        schemas = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "nis",
                                                                                  "inetorgperson"))
        return f"""{schemas}
pidfile {work}/slapd.pid
argsfile {work}/slapd.args
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof
TLSCACertificateFile {work}/ca.pem
TLSCertificateFile {work}/server.pem
TLSCertificateKeyFile {work}/server.key

database mdb
maxsize 67108864
suffix "{self.base_dn}"
rootdn "{self.root_dn}"
rootpw {self._hash(slappasswd, self.root_password)}
directory {work}/db
index objectClass eq
index uid,mail,member eq
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by dn.exact="{self.service_dn}" read
    by self read
    by * none
"""

    def _ldif(self, slappasswd: str) -> str:
        entries = [
            _entry(self.base_dn, [("objectClass", "dcObject"), ("objectClass", "organization"), ("dc", "example"),
                                  ("o", "Example")]),
            *(_entry(f"ou={ou},{self.base_dn}", [("objectClass", "organizationalUnit"), ("ou", ou)])
              for ou in ("people", "groups", "services")),
            _entry(self.service_dn, [("objectClass", "organizationalRole"), ("objectClass", "simpleSecurityObject"),
                                     ("cn", "keyhall-svc"),
                                     ("userPassword", self._hash(slappasswd, self.service_password))]),
        ]
        for uid, (cn, given, sn, mails) in PEOPLE.items():
            attributes = [("objectClass", "inetOrgPerson"), ("uid", uid), ("cn", cn), ("givenName", given),
                          ("sn", sn), ("displayName", cn), *(("mail", m) for m in mails),
                          ("userPassword", self._hash(slappasswd, self.passwords[uid]))]
            entries.append(_entry(user_dn(uid), attributes))
        for cn, members in GROUPS.items():
            entries.append(_entry(group_dn(cn), [("objectClass", "groupOfNames"), ("cn", cn),
                                                 *(("member", user_dn(uid)) for uid in members)]))
        return "\n".join(entries)

    def _launch(self, programs: dict[str, str]) -> None:
        work = self.workdir
        conf = work / "slapd.conf"
        conf.write_text(self._config(programs["slappasswd"]))
        checked = subprocess.run([programs["slaptest"], "-f", str(conf), "-u"], capture_output=True, timeout=30,
                                 check=False)
        if checked.returncode != 0:
            peer_unavailable(f"slaptest refused slapd.conf:\n{checked.stderr.decode(errors='replace')[-2000:]}")
        urls = f"ldap://{self.host}:{self.port}/ ldaps://{self.host}:{self.ldaps_port}/"
        with (work / "slapd.log").open("wb") as log:
            self._process = subprocess.Popen([programs["slapd"], "-f", str(conf), "-h", urls, "-d", "256"],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        (work / "root.pw").write_text(self.root_password)  # ldapadd -y reads it whole: no newline
        (work / "data.ldif").write_text(self._ldif(programs["slappasswd"]))
        loaded = subprocess.run([programs["ldapadd"], "-x", "-H", f"ldap://{self.host}:{self.port}",
                                 "-D", self.root_dn, "-y", str(work / "root.pw"), "-f", str(work / "data.ldif")],
                                capture_output=True, timeout=30, check=False)
        if loaded.returncode != 0:
            peer_unavailable(f"ldapadd failed: {loaded.stderr.decode(errors='replace')}\n{self.log()[-2000:]}")

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                peer_unavailable(f"slapd exited with status {self._process.returncode}:\n{self.log()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5), \
                        socket.create_connection((self.host, self.ldaps_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        peer_unavailable(f"slapd did not listen within {STARTUP_TIMEOUT:g} s:\n{self.log()[-2000:]}")

    def log(self) -> str:
        """What slapd logged so far: one ``conn=N op=M`` line per operation and result."""
        try:
            return (self.workdir / "slapd.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def ldap_settings(self, **overrides: Any) -> dict[str, Any]:
        """Keyhall ``LdapSettings`` fields for this directory: plain LDAP, the service account,
        users searched by uid, groups read from ``memberOf``."""
        values: dict[str, Any] = {
            "server": self.host, "port": self.port, "security": "none", "base_dn": self.base_dn,
            "bind_dn": self.service_dn, "user_search_base": self.people_dn, "user_search_filter": "(uid=%s)",
            "group_member_attribute": "memberOf", "timeout_seconds": 3.0,
        }
        values.update(overrides)
        return values

    def bind_secrets(self) -> dict[str, str]:
        return {"bind_password": self.service_password}

    def stop(self) -> None:
        """End slapd by its PID (SIGTERM, then SIGKILL) and remove its temporary directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._workdir.cleanup()


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """A real OpenLDAP directory on 127.0.0.1 with the entries above, LDAP/StartTLS and LDAPS."""
    server = Slapd.start()
    try:
        yield server
    finally:
        server.stop()
