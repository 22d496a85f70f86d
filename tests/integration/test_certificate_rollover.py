"""IdP certificates that roll over without a failed sign-in, that announce their expiry, and SP keys
that roll over published first.

A real Keyhall server and the real npm saml-idp; the IdP's metadata is served by a small HTTP server
in the test (with ``ETag`` and ``304 Not Modified``) so that it can publish a rollover: first the
current key, then both, then only the new one, while saml-idp is restarted on the same port with the
new key. The background refresh (``keyhall.jobs.watch_certificates``, called directly) runs on a
controllable clock; sign-ins go through saml-idp at every step and none fails.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from keyhall.jobs import watch_certificates
from keyhall.metrics import current_metrics
from keyhall.runtime import Runtime
from tests.integration.test_saml_signin_e2e import (
    SamlSetup,
    authn_request,
    follow_completion,
    make_saml_setup,
    new_browser,
    post_acs,
    product_client,
    redeem,
    redirect_params,
    sign_in,
    start,
)
from tests.support import saml_responses
from tests.support.api import auth
from tests.support.live import LiveKeyhall, serving_keyhall
from tests.support.saml_idp import SamlIdp, _make_idp_certificate, _node
from tests.support.servers import keyhall_cli

pytestmark = pytest.mark.peers

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
EXPIRING = "connection.certificate.expiring"


class MetadataServer:
    """Serves ``documents[path]`` with a strong ETag, answering 304 to a matching If-None-Match."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.answers: list[tuple[str, int, str | None]] = []  # (path, status, If-None-Match sent)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.documents.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                sent = self.headers.get("If-None-Match")
                status = 304 if sent == etag else 200
                outer.answers.append((self.path, status, sent))
                self.send_response(status)
                self.send_header("ETag", etag)
                if status == 200:
                    self.send_header("Content-Type", "application/samlmetadata+xml")
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status == 200:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def pem_body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if "-----" not in line)


def metadata_with(idp_metadata: bytes, certificates: list[str]) -> bytes:
    """The IdP's own metadata document, its signing keys replaced by ``certificates`` (PEM)."""
    root = etree.fromstring(idp_metadata)
    descriptor = root.find(f"{{{MD}}}IDPSSODescriptor")
    assert descriptor is not None
    for old in descriptor.findall(f"{{{MD}}}KeyDescriptor"):
        descriptor.remove(old)
    for index, pem in enumerate(certificates):
        key = etree.Element(f"{{{MD}}}KeyDescriptor", use="signing")
        data = etree.SubElement(etree.SubElement(key, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
        etree.SubElement(data, f"{{{DS}}}X509Certificate").text = pem_body(pem)
        descriptor.insert(index, key)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def short_lived_certificate(not_after: datetime) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expiring-idp")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_after - timedelta(days=365))
            .not_valid_after(not_after).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def restarted_with(idp: SamlIdp, cert_pem: str, key_pem: str) -> SamlIdp:
    """The same IdP (entity ID, port) after its owner replaced its signing key and certificate."""
    idp.stop()
    fresh = SamlIdp(port=idp.port)
    fresh.cert_pem, fresh._key_pem = cert_pem, key_pem
    try:
        fresh._launch(_node())
    except BaseException:
        fresh.stop()
        raise
    return fresh


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKeyhall]:
    with serving_keyhall(Path(tmp_path_factory.mktemp("certs-data")), tmp_path_factory.mktemp("certs-db"),
                         allow_unverified_domains=True) as server:
        yield server


@pytest.fixture(scope="module")
def metadata() -> Iterator[MetadataServer]:
    server = MetadataServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rotating_idp() -> Iterator[list[SamlIdp]]:
    """A saml-idp of this module's own (it is restarted with another key); the list holds the current one."""
    holder = [SamlIdp.start()]
    yield holder
    holder[0].stop()


def signs_in(s: SamlSetup) -> None:
    with new_browser() as browser, product_client(s) as product:
        callback, started = sign_in(s, browser, product)
        assert redeem(s, product, callback, started)["email"] == f"alice@{s.domain}"


def fingerprints(s: SamlSetup) -> list[str]:
    return sorted(c["sha256_fingerprint"] for c in s.get_connection()["discovered"]["certificates"])


def expiring_events(live: LiveKeyhall, connection_id: str) -> list[dict[str, Any]]:
    with live.api() as api:
        response = api.get("/v1/events", params={"types": EXPIRING, "limit": 200}, headers=auth(live.instance_token))
    assert response.status_code == 200, response.text
    return [e for e in response.json()["data"] if e["data"]["connection_id"] == connection_id]


def test_a_rotating_idp_certificate_never_fails_a_sign_in(live: LiveKeyhall, metadata: MetadataServer,
                                                          rotating_idp: list[SamlIdp]) -> None:
    old = rotating_idp[0]
    idp_xml = old.metadata_xml()
    path = f"/rotating-{uuid.uuid4().hex[:8]}.xml"
    metadata.documents[path] = metadata_with(idp_xml, [old.cert_pem])
    s = make_saml_setup(live, old, "Rotating", pin_certificate=False, metadata_url=metadata.url(path))
    old_print = s.connection["discovered"]["certificates"][0]["sha256_fingerprint"]
    now = datetime.now(UTC)
    clock = [now]

    def refresh(after: timedelta) -> dict[str, int]:
        clock[0] += after
        return watch_certificates(live.runtime, clock=lambda: clock[0])

    signs_in(s)
    assert s.get_connection()["is_verified"] is True
    refresh(timedelta(seconds=1))  # first look: the metadata fetched, nothing new
    assert refresh(timedelta(hours=1, seconds=1))["adopted"] == 0
    assert metadata.answers[-1][1] == 304
    assert metadata.answers[-1][2]

    # The IdP publishes its next key beside the current one; Keyhall trusts both.
    next_cert, next_key = _make_idp_certificate()
    metadata.documents[path] = metadata_with(idp_xml, [old.cert_pem, next_cert])
    assert refresh(timedelta(hours=1, seconds=1))["adopted"] == 1
    assert len(fingerprints(s)) == 2
    adopted = s.audit("connection.certificate.adopted")
    assert len(adopted) == 1
    assert adopted[0]["actor"] == "system:metadata-refresh"
    signs_in(s)  # still signed with the old key

    # The IdP switches to the new key, and its metadata lists only that one.
    new = rotating_idp[0] = restarted_with(old, next_cert, next_key)
    s.idp = new
    signs_in(s)  # the new key, already trusted
    metadata.documents[path] = metadata_with(idp_xml, [next_cert])
    assert refresh(timedelta(hours=1, seconds=1))["dropped"] == 0  # the old key stays through the overlap
    assert old_print in fingerprints(s)
    signs_in(s)
    assert refresh(timedelta(days=7))["dropped"] == 1
    assert old_print not in fingerprints(s)
    assert len(fingerprints(s)) == 1
    assert len(s.audit("connection.certificate.dropped")) == 1
    signs_in(s)
    after = s.get_connection()
    assert after["is_verified"] is True  # same IdP, same entity ID: the refresh keeps the verification
    assert s.audit("login.failed") == []


def test_a_changed_entity_id_is_not_adopted_and_is_audited(live: LiveKeyhall, metadata: MetadataServer,
                                                           rotating_idp: list[SamlIdp]) -> None:
    idp = rotating_idp[0]
    idp_xml = idp.metadata_xml()
    path = f"/moved-{uuid.uuid4().hex[:8]}.xml"
    metadata.documents[path] = metadata_with(idp_xml, [idp.cert_pem])
    s = make_saml_setup(live, idp, "Moved", pin_certificate=False, metadata_url=metadata.url(path))
    other = short_lived_certificate(datetime.now(UTC) + timedelta(days=400))
    moved = metadata_with(idp_xml, [idp.cert_pem, other]).replace(b'entityID="urn:test:idp"',
                                                                    b'entityID="urn:test:someone-else"')
    assert b"someone-else" in moved
    metadata.documents[path] = moved
    clock = datetime.now(UTC) + timedelta(days=1)
    watch_certificates(live.runtime, clock=lambda: clock)
    assert len(fingerprints(s)) == 1
    failed = s.audit("connection.metadata.refresh_failed")
    assert len(failed) == 1
    assert failed[0]["changes"]["reason"] == "entity_id_changed"
    watch_certificates(live.runtime, clock=lambda: clock + timedelta(hours=2))
    assert len(s.audit("connection.metadata.refresh_failed")) == 1  # once, not every pass


def test_opting_out_keeps_the_certificates_as_they_are(live: LiveKeyhall, metadata: MetadataServer,
                                                       rotating_idp: list[SamlIdp]) -> None:
    idp = rotating_idp[0]
    idp_xml = idp.metadata_xml()
    path = f"/frozen-{uuid.uuid4().hex[:8]}.xml"
    metadata.documents[path] = metadata_with(idp_xml, [idp.cert_pem])
    s = make_saml_setup(live, idp, "Frozen", pin_certificate=False, metadata_url=metadata.url(path),
                        auto_update_certificates=False)
    assert s.connection["saml"]["auto_update_certificates"] is False
    metadata.documents[path] = metadata_with(idp_xml, [idp.cert_pem, short_lived_certificate(
        datetime.now(UTC) + timedelta(days=400))])
    watch_certificates(live.runtime, clock=lambda: datetime.now(UTC) + timedelta(days=2))
    assert len(fingerprints(s)) == 1
    assert s.audit("connection.certificate.adopted") == []


def test_expiring_certificates_are_announced_on_their_days(live: LiveKeyhall, metadata: MetadataServer,
                                                          rotating_idp: list[SamlIdp]) -> None:
    idp = rotating_idp[0]
    start = datetime.now(UTC)
    not_after = (start + timedelta(days=100)).replace(microsecond=0)
    path = f"/expiring-{uuid.uuid4().hex[:8]}.xml"
    metadata.documents[path] = metadata_with(idp.metadata_xml(), [short_lived_certificate(not_after)])
    s = make_saml_setup(live, idp, "Expiring", pin_certificate=False, metadata_url=metadata.url(path))

    fired: list[tuple[float, list[str]]] = []
    for days_before in (95, 90, 89, 30, 29, 7, 6, 1, 0.5):
        moment = not_after - timedelta(days=days_before) + timedelta(minutes=1)
        watch_certificates(live.runtime, clock=lambda moment=moment: moment)
        fired.append((days_before, [e["data"]["threshold"] for e in expiring_events(live, s.cid)]))
    assert fired == [(95, []), (90, ["90"]), (89, ["90"]), (30, ["90", "30"]), (29, ["90", "30"]),
                     (7, ["90", "30", "7"]), (6, ["90", "30", "7"]), (1, ["90", "30", "7", "1"]),
                     (0.5, ["90", "30", "7", "1"])]
    after = [not_after + timedelta(minutes=1), not_after + timedelta(minutes=2), not_after + timedelta(days=1),
             not_after + timedelta(days=2)]
    for moment in after:
        watch_certificates(live.runtime, clock=lambda moment=moment: moment)
    thresholds = [e["data"]["threshold"] for e in expiring_events(live, s.cid)]
    # daily while expired: once per calendar day (UTC), however often it is looked at
    assert thresholds == ["90", "30", "7", "1"] + ["expired"] * len({moment.date() for moment in after})
    last = expiring_events(live, s.cid)[-1]["data"]
    assert last["organization_id"] == s.org["id"]
    assert last["days_left"] < 0
    assert last["not_after"].startswith(not_after.strftime("%Y-%m-%dT%H:%M:%S"))
    metrics = current_metrics()
    assert metrics is not None
    prefix = f'keyhall_idp_certificate_not_after_seconds{{connection="{s.cid}"}} '
    values = [line[len(prefix):] for line in metrics.exposition().decode().splitlines() if line.startswith(prefix)]
    assert [float(v) for v in values] == [not_after.timestamp()]


# --- SP key rollover ---------------------------------------------------------------------------------


def sp_metadata_certificates(live: LiveKeyhall, cid: str) -> dict[str, list[str]]:
    with live.api() as api:
        response = api.get(f"/sso/{cid}/saml/metadata")
    assert response.status_code == 200, response.text
    found: dict[str, list[str]] = {}
    for descriptor in etree.fromstring(response.content).iter(f"{{{MD}}}KeyDescriptor"):
        found.setdefault(descriptor.get("use") or "", []).append(descriptor.findtext(f".//{{{DS}}}X509Certificate")
                                                                  or "")
    return found


def keyhall_command(live: LiveKeyhall, *args: str) -> dict[str, Any]:
    """The ``keyhall`` command (in process, ``keyhall_cli``) against the live server's installation."""
    settings = live.runtime.settings
    env = {"KEYHALL_DATA_DIR": str(settings.data_dir), "KEYHALL_DATABASE_URL": settings.resolved_database_url,
           "KEYHALL_SECRET_KEYS": str(settings.secret_keys)}
    return keyhall_cli(env, settings.data_dir, *args)


def signs_in_encrypted(s: SamlSetup, encrypt_to: str) -> None:
    """A sign-in whose assertion the IdP encrypts to ``encrypt_to`` (an SP certificate), signed with the
    IdP's own key, answering Keyhall's AuthnRequest."""
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        request_id = authn_request(started.idp_url).get("ID")
        email = f"alice@{s.domain}"
        spec = saml_responses.ResponseSpec(
            datetime.now(UTC), encrypt="aes256-gcm", sign="both", in_response_to=request_id,
            destination=s.acs_url, recipient=s.acs_url, audience=s.idp.sp_entity_id, issuer=s.idp.entity_id,
            response_issuer=s.idp.entity_id, name_id=email, name_id_format=saml_responses.EMAIL_FORMAT,
            attributes={"email": [email], "firstName": ["Alice"], "lastName": ["Archer"]})
        signer = saml_responses.Signer(s.idp.cert_pem, s.idp._key_pem)
        xml = saml_responses.make_response(spec, signer, sp_cert_pem=encrypt_to)
        relay = redirect_params(started.idp_url)["RelayState"]
        done = follow_completion(s, browser, post_acs(s, browser, s.acs_url, saml_responses.encode(xml), relay))
        assert done.status_code == 303, done.text
        assert redeem(s, product, done.headers["location"], started)["email"] == email


def test_sp_key_rollover_is_published_first_and_both_keys_decrypt(live: LiveKeyhall, metadata: MetadataServer,
                                                                  rotating_idp: list[SamlIdp]) -> None:
    idp = rotating_idp[0]
    path = f"/sp-rollover-{uuid.uuid4().hex[:8]}.xml"
    metadata.documents[path] = metadata_with(idp.metadata_xml(), [idp.cert_pem])
    s = make_saml_setup(live, idp, "SpRollover", pin_certificate=False, metadata_url=metadata.url(path))
    current = s.connection["saml"]["sp_certificate"]
    signs_in_encrypted(s, current)
    assert s.get_connection()["is_verified"] is True

    staged = keyhall_command(live, "sp-keys", "rotate", s.cid, "--activate-after-days", "7")
    upcoming = staged["next_certificate"]
    published = sp_metadata_certificates(live, s.cid)
    assert published == {"signing": [pem_body(current), pem_body(upcoming)],
                         "encryption": [pem_body(current), pem_body(upcoming)]}
    assert s.get_connection()["saml"]["sp_certificate"] == current  # published, not yet active
    signs_in_encrypted(s, upcoming)  # an IdP that already took the next key from the metadata
    signs_in_encrypted(s, current)  # and one that did not yet
    assert len(s.audit("connection.sp_key.staged")) == 1

    activation = datetime.fromisoformat(staged["activates_at"].replace("Z", "+00:00"))
    watch_certificates(live.runtime, clock=lambda: activation + timedelta(seconds=1))
    after = s.get_connection()
    assert after["saml"]["sp_certificate"] == upcoming
    assert after["is_verified"] is True
    assert sp_metadata_certificates(live, s.cid) == {"signing": [pem_body(upcoming)],
                                                     "encryption": [pem_body(upcoming)]}
    assert len(s.audit("connection.sp_key.activated")) == 1
    signs_in_encrypted(s, upcoming)
    signs_in_encrypted(s, current)  # the previous key still decrypts through the overlap
    assert s.audit("login.failed") == []


# --- several instances ---------------------------------------------------------------------------------


def test_several_instances_refresh_each_connection_once(live: LiveKeyhall, metadata: MetadataServer,
                                                        rotating_idp: list[SamlIdp]) -> None:
    idp = rotating_idp[0]
    urls = []
    for n in range(3):
        path = f"/shared-{n}-{uuid.uuid4().hex[:8]}.xml"
        metadata.documents[path] = metadata_with(idp.metadata_xml(), [idp.cert_pem])
        make_saml_setup(live, idp, f"Shared{n}", pin_certificate=False, metadata_url=metadata.url(path))
        urls.append(metadata.url(path))
    second = Runtime.build(live.runtime.settings)  # another Keyhall instance on the same database
    fetched: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(2)

    def fetch(url: str, *, etag: str | None, last_modified: str | None, now: datetime) -> None:
        with lock:
            fetched.append(url)
        time.sleep(0.02)  # the other instance runs meanwhile
        return None  # 304 Not Modified

    moment = datetime.now(UTC) + timedelta(days=30)

    def instance(runtime: Runtime) -> None:
        go.wait(timeout=10)
        watch_certificates(runtime, fetch=fetch, clock=lambda: moment)

    try:
        threads = [threading.Thread(target=instance, args=(rt,)) for rt in (live.runtime, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        second.database.dispose()
    assert set(urls) <= set(fetched)
    assert len(fetched) == len(set(fetched))  # no connection refreshed twice
