"""A real SAML 2.0 identity provider for the tests: npm ``saml-idp`` run from ``tests/peers/saml_idp``.

``SamlIdp.start()`` makes an RSA-2048 certificate and key for the IdP, runs
``node node_modules/saml-idp/bin/run.js`` on a free port of 127.0.0.1 with issuer
:data:`IDP_ENTITY_ID` and audience :data:`SP_ENTITY_ID` (a fixed SP entity ID: Keyhall
connections let the owner set ``saml.sp_entity_id``), waits (bounded) until ``/metadata``
answers, and ``stop()`` ends it by its PID. Missing ``node``, missing ``node_modules`` (run
``npm ci`` in ``tests/peers/saml_idp``) or a failed start goes through ``peer_unavailable``.

What saml-idp 1.2.1 does (read from its ``app.js`` and from samlp 7.1.1):

- It signs the ``<samlp:Response>`` (``signResponse``) and the ``<saml:Assertion>``
  (``signAssertion``), both RSA-SHA256 with SHA-256 digests and Exclusive C14N, by default.
- The ACS (the form's action, ``Destination`` and ``Recipient``) is the AuthnRequest's
  ``AssertionConsumerServiceURL`` unless ``allowRequestAcsUrl`` is false; otherwise, and for
  IdP-initiated logins, it is the ``acsUrl`` setting. ``NameIDPolicy`` is ignored: the NameID is
  the user's ``userName`` in the user's ``nameIdFormat``.
- It never checks AuthnRequest signatures; :func:`samlp_signature_error` runs samlp's own
  checker in a separate ``node`` process to do that.
- The user and its attributes are one global object that each ``/signin`` overwrites key by key,
  so :meth:`SamlIdp.scripted_login` sends every attribute every time.
- ``POST /settings`` writes any key into the live IdP options (``"true"``/``"false"`` become
  booleans, digit strings integers); :data:`SETTINGS_AT_START` lists the ones that matter here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.peers import free_port, peer_unavailable

PEER_DIR = Path(__file__).resolve().parents[1] / "peers" / "saml_idp"
RUN_SCRIPT = Path("node_modules") / "saml-idp" / "bin" / "run.js"
VERIFY_SCRIPT = "verify_request.js"
STARTUP_TIMEOUT = 20.0  # seconds; a cold start takes under one
IDP_ENTITY_ID = "urn:test:idp"
SP_ENTITY_ID = "urn:keyhall:test-sp"
# Port 9 (discard) on loopback: nothing listens there, so a response sent to it goes nowhere.
PLACEHOLDER_ACS_URL = "http://127.0.0.1:9/saml-idp-placeholder-acs"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"

SettingValue = str | bool | int
#: The IdP options that tests may change with ``configure``, with their values at start.
SETTINGS_AT_START: dict[str, SettingValue] = {
    "audience": SP_ENTITY_ID,
    "acsUrl": PLACEHOLDER_ACS_URL,
    "recipient": PLACEHOLDER_ACS_URL,
    "destination": PLACEHOLDER_ACS_URL,
    "allowRequestAcsUrl": True,
    "RelayState": "",
    "signResponse": True,
    "signAssertion": True,
    "signatureAlgorithm": "rsa-sha256",
    "digestAlgorithm": "sha256",
    "lifetimeInSeconds": 3600,
    "issuer": IDP_ENTITY_ID,
    "authnContextClassRef": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
    # The SP's Single Logout URL; when set, /signout and /saml/slo run samlp's SLO (blank: off).
    "sloUrl": "",
}

#: Every attribute the IdP knows; ``groups`` is multi-valued (comma-separated on the wire).
DEFAULT_USER: dict[str, str] = {
    "userName": "alice@example.com",
    "nameIdFormat": EMAIL_FORMAT,
    "firstName": "Alice",
    "lastName": "Archer",
    "displayName": "Alice Archer",
    "email": "alice@example.com",
    "mobilePhone": "+1-555-0100",
    "groups": "engineering,admins",
}

UserAttributes = Mapping[str, str | Sequence[str]]


class FormReader(HTMLParser):
    """Collects each form's action and every input's name and value (entities already decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.actions: list[str] = []
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.actions.append(values.get("action") or "")
        elif tag == "input" and values.get("name"):
            self.inputs[str(values["name"])] = values.get("value") or ""


def read_forms(page: str) -> FormReader:
    reader = FormReader()
    reader.feed(page)
    reader.close()
    return reader


def _make_idp_certificate() -> tuple[str, str]:
    """A self-signed RSA-2048/SHA-256 certificate and key of its own (no key shared with other tests)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-idp")])
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return cert_pem, key_pem


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        peer_unavailable("`node` is not installed (Debian package nodejs)")
    if not (PEER_DIR / RUN_SCRIPT).is_file():
        peer_unavailable(f"saml-idp is not installed: run `npm ci` in {PEER_DIR}")
    return node


def samlp_signature_error(
    cert_pem: str, *, redirect_url: str | None = None, form: Mapping[str, str] | None = None
) -> str | None:
    """Check a signed AuthnRequest with samlp's own parser; None when the signature verifies.

    Give the HTTP-Redirect URL (its query is read as sent) or the HTTP-POST form fields. samlp
    accepts RSA-SHA1 and RSA-SHA256 only, and refuses an unsigned request once a certificate is
    configured, which is what this passes.
    """
    if (redirect_url is None) == (form is None):
        raise ValueError("give exactly one of redirect_url and form")
    job: dict[str, object] = {"cert": cert_pem}
    if redirect_url is not None:
        job["query"] = httpx.URL(redirect_url).query.decode("ascii")
    else:
        job["body"] = dict(form or {})
    completed = subprocess.run(
        [_node(), VERIFY_SCRIPT],
        cwd=PEER_DIR,
        input=json.dumps(job).encode("utf-8"),
        capture_output=True,
        timeout=20,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"{VERIFY_SCRIPT} failed: {completed.stderr.decode(errors='replace')[-2000:]}")
    answer = json.loads(completed.stdout)
    return None if answer["ok"] else str(answer["error"])


class SamlIdp:
    """One running saml-idp, reached at ``base_url`` (always 127.0.0.1)."""

    def __init__(self, *, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.metadata_url = f"{self.base_url}/metadata"
        self.sso_url = f"{self.base_url}/saml/sso"
        self.entity_id = IDP_ENTITY_ID
        self.sp_entity_id = SP_ENTITY_ID
        self.cert_pem, self._key_pem = _make_idp_certificate()
        self._workdir = tempfile.TemporaryDirectory(prefix="keyhall-saml-idp-")
        self._log_path = Path(self._workdir.name) / "idp.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._settings: dict[str, SettingValue] = dict(SETTINGS_AT_START)

    @classmethod
    def start(cls) -> SamlIdp:
        """Start an IdP on a free port and wait until its metadata is served."""
        node = _node()
        idp = cls(port=free_port())
        try:
            idp._launch(node)
        except BaseException:
            idp.stop()
            raise
        return idp

    def _launch(self, node: str) -> None:
        workdir = Path(self._workdir.name)
        cert_path, key_path = workdir / "idp.crt", workdir / "idp.key"
        cert_path.write_text(self.cert_pem, encoding="ascii")
        key_path.write_text(self._key_pem, encoding="ascii")
        command = [
            node, str(RUN_SCRIPT),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--cert", str(cert_path), "--key", str(key_path),
            "--issuer", IDP_ENTITY_ID, "--acsUrl", PLACEHOLDER_ACS_URL, "--audience", SP_ENTITY_ID,
        ]  # fmt: skip
        # saml-idp lets HOST and PORT from the environment override --host and --port.
        env = {name: value for name, value in os.environ.items() if name not in ("HOST", "PORT")}
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, cwd=PEER_DIR, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    peer_unavailable(f"saml-idp exited with status {self._process.returncode}:\n{self.log()[-2000:]}")
                try:
                    if client.get(self.metadata_url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        peer_unavailable(f"saml-idp was not ready within {STARTUP_TIMEOUT:g} s:\n{self.log()[-2000:]}")

    def log(self) -> str:
        """Everything the IdP printed so far (it logs each request and each response it mints)."""
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def metadata_xml(self) -> bytes:
        """The IdP's metadata document, fetched now."""
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            response = client.get(self.metadata_url)
        response.raise_for_status()
        return response.content

    def configure(self, **settings: SettingValue) -> None:
        """Change live IdP options by ``POST /settings`` (names in :data:`SETTINGS_AT_START`).

        E.g. ``signResponse=False``, ``signAssertion=False``, ``audience="urn:other"``,
        ``allowRequestAcsUrl=False`` with ``acsUrl``/``recipient``/``destination``,
        ``signatureAlgorithm="rsa-sha1", digestAlgorithm="sha1"``. Undo with :meth:`reset`.
        """
        unknown = sorted(set(settings) - set(SETTINGS_AT_START))
        if unknown:
            raise ValueError(f"unknown saml-idp settings {unknown}; known: {sorted(SETTINGS_AT_START)}")
        form = {name: ("true" if value else "false") if isinstance(value, bool) else str(value)
                for name, value in settings.items()}  # fmt: skip
        with httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False) as client:
            response = client.post(f"{self.base_url}/settings", data=form)
        if response.status_code != 302:
            raise AssertionError(f"POST /settings answered HTTP {response.status_code}: {response.text[:500]}")
        self._settings.update(settings)

    def reset(self) -> None:
        """Put back every option changed by :meth:`configure` to its value at start."""
        changed = {name: value for name, value in SETTINGS_AT_START.items() if self._settings[name] != value}
        if changed:
            self.configure(**changed)

    def _attributes(self, user: UserAttributes) -> dict[str, str]:
        unknown = sorted(set(user) - set(DEFAULT_USER))
        if unknown:
            raise ValueError(f"unknown user attributes {unknown}; known: {sorted(DEFAULT_USER)}")
        merged: dict[str, str] = dict(DEFAULT_USER)
        for name, value in user.items():
            merged[name] = value if isinstance(value, str) else ",".join(value)
        return merged

    def _sign_in(
        self, client: httpx.Client, user: UserAttributes, authn_request: str | None
    ) -> tuple[str, str, str | None]:
        form = self._attributes(user)
        if authn_request is not None:
            form["_authnRequest"] = authn_request
        response = client.post(f"{self.base_url}/signin", data=form)
        page = read_forms(response.text)
        if response.status_code != 200 or "SAMLResponse" not in page.inputs or len(page.actions) != 1:
            raise AssertionError(
                f"POST /signin: HTTP {response.status_code}, no SAMLResponse form: {response.text[:500]}\n"
                f"{self.log()[-2000:]}"
            )
        return page.actions[0], page.inputs["SAMLResponse"], page.inputs.get("RelayState") or None

    def _login_page(
        self, client: httpx.Client, response: httpx.Response, user: UserAttributes
    ) -> tuple[str, str, str | None]:
        authn_request = read_forms(response.text).inputs.get("_authnRequest")
        if response.status_code != 200 or not authn_request:
            raise AssertionError(
                f"the IdP did not accept the AuthnRequest: HTTP {response.status_code} {response.text[:800]}\n"
                f"{self.log()[-2000:]}"
            )
        return self._sign_in(client, user, authn_request)

    @property
    def key_pem(self) -> str:
        """The IdP's signing key, for tests that sign messages as this IdP would."""
        return self._key_pem

    def scripted_login(self, sso_redirect_url: str, *, user: UserAttributes,
                       client: httpx.Client | None = None) -> tuple[str, str, str | None]:
        """Play the browser through an SP-initiated login by HTTP-Redirect.

        GET the SSO URL (the IdP parses the AuthnRequest and shows its login page), read the
        page's hidden ``_authnRequest`` field, POST ``/signin`` with every user attribute and
        that field, and read the auto-post page: returns (form action = the ACS URL,
        SAMLResponse as posted (base64), RelayState or None). With ``client``, that browser (and
        its IdP session cookie) is used.
        """
        if not sso_redirect_url.startswith(self.sso_url + "?"):
            raise ValueError(f"not a redirect to this IdP's SSO endpoint {self.sso_url}: {sso_redirect_url[:200]}")
        if client is not None:  # the caller's browser keeps the IdP's session cookie (single logout needs it)
            return self._login_page(client, client.get(sso_redirect_url), user)
        with httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False) as client:
            response = client.get(sso_redirect_url)
            return self._login_page(client, response, user)

    def scripted_post_login(self, fields: Mapping[str, str], *, user: UserAttributes) -> tuple[str, str, str | None]:
        """As :meth:`scripted_login`, for an AuthnRequest sent by HTTP-POST with ``fields``
        (``SAMLRequest`` and optionally ``RelayState``) to :attr:`sso_url`."""
        with httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False) as client:
            response = client.post(self.sso_url, data=dict(fields))
            return self._login_page(client, response, user)

    def idp_initiated_login(
        self, *, acs_url: str, user: UserAttributes, relay_state: str | None = None
    ) -> tuple[str, str, str | None]:
        """An unsolicited response (saml-profiles-2.0-os §4.1.5) posted to ``acs_url``.

        Sets the IdP's ACS (and RelayState) for this one login, POSTs ``/signin`` without an
        ``_authnRequest`` and puts those options back as they were; returns as :meth:`scripted_login`.
        """
        names = ("acsUrl", "recipient", "destination", "RelayState")
        before = {name: self._settings[name] for name in names}
        self.configure(acsUrl=acs_url, recipient=acs_url, destination=acs_url, RelayState=relay_state or "")
        try:
            with httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False) as client:
                return self._sign_in(client, user, None)
        finally:
            self.configure(**before)

    def stop(self) -> None:
        """End the IdP by its PID (SIGTERM, then SIGKILL) and remove its temporary files."""
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
def saml_idp() -> Iterator[SamlIdp]:
    """A real SAML IdP (saml-idp) with issuer ``urn:test:idp`` and audience ``urn:keyhall:test-sp``."""
    idp = SamlIdp.start()
    try:
        yield idp
    finally:
        idp.stop()
