"""A real OpenID provider for the tests: npm ``oidc-provider`` run by ``tests/peers/oidc_provider``.

``OidcIdp.start()`` runs ``node provider.mjs`` on a free port of 127.0.0.1 with generated
accounts and one static confidential client, waits (bounded) for its ready line, and
``stop()`` ends it by its PID. Missing ``node``, missing ``node_modules`` (run ``npm ci`` in
``tests/peers/oidc_provider``) or a failed start goes through ``peer_unavailable``: a failure
in CI, a skip on a developer's machine.

``scripted_login(authorize_url, login)`` plays the browser through the provider's devInteractions
(login, consent) and returns the redirect back to the relying party; ``signing_jwks()`` reads
the provider's published keys.

Fixtures (session-scoped, started once):

- ``oidc_idp``: issuer ``http://127.0.0.1:PORT``, reached at the same address.
- ``oidc_idp_wrong_issuer``: configured issuer ``http://localhost:PORT`` while tests reach it at
  ``http://127.0.0.1:PORT``, so its discovery document names an issuer other than the one used
  to find it (OpenID Connect Discovery 1.0 §4.3).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.peers import free_port, peer_unavailable

PEER_DIR = Path(__file__).resolve().parents[1] / "peers" / "oidc_provider"
STARTUP_TIMEOUT = 20.0  # seconds; a cold start takes about one
MAX_LOGIN_STEPS = 12  # requests in one scripted login; the usual flow takes six
_PROMPT_INPUT = re.compile(r'<input[^>]*name="prompt"[^>]*value="([a-z_]+)"')

DEFAULT_ACCOUNTS: tuple[dict[str, Any], ...] = (
    {
        "sub": "alice",
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice Archer",
        "given_name": "Alice",
        "family_name": "Archer",
        "groups": ["engineering", "admins"],
    },
    {
        "sub": "bob",
        "email": "bob@example.com",
        "email_verified": False,
        "name": "Bob Baker",
        "given_name": "Bob",
        "family_name": "Baker",
        "groups": ["sales"],
    },
)


class OidcIdp:
    """One running oidc-provider. ``issuer`` is what it calls itself; ``base_url`` is where it
    is reached (always 127.0.0.1). Endpoints follow the reaching address, not the issuer."""

    def __init__(
        self,
        *,
        port: int,
        issuer: str,
        accounts: tuple[dict[str, Any], ...] = DEFAULT_ACCOUNTS,
        static_redirect_uris: tuple[str, ...] = ("http://127.0.0.1/static-client-callback",),
    ) -> None:
        self.port = port
        self.issuer = issuer
        self.base_url = f"http://127.0.0.1:{port}"
        self.discovery_url = f"{self.base_url}/.well-known/openid-configuration"
        self.jwks_uri = f"{self.base_url}/jwks"
        self.registration_endpoint = f"{self.base_url}/reg"
        self.accounts = accounts
        self.static_client_id = "keyhall-static-client"
        self.static_client_secret = secrets.token_urlsafe(32)
        self.static_redirect_uris = static_redirect_uris
        self._workdir = tempfile.TemporaryDirectory(prefix="keyhall-oidc-idp-")
        self._log_path = Path(self._workdir.name) / "provider.log"
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, *, issuer: str | None = None, issuer_host: str = "127.0.0.1",
              accounts: tuple[dict[str, Any], ...] = DEFAULT_ACCOUNTS) -> OidcIdp:
        """Start a provider on a free port; its issuer is ``issuer`` or ``http://{issuer_host}:PORT``."""
        node = shutil.which("node")
        if node is None:
            peer_unavailable("`node` is not installed (Debian package nodejs)")
        if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
            peer_unavailable(f"oidc-provider is not installed: run `npm ci` in {PEER_DIR}")
        port = free_port()
        idp = cls(port=port, issuer=issuer or f"http://{issuer_host}:{port}", accounts=accounts)
        try:
            idp._launch(node)
        except BaseException:
            idp.stop()
            raise
        return idp

    def _launch(self, node: str) -> None:
        workdir = Path(self._workdir.name)
        accounts_path = workdir / "accounts.json"
        accounts_path.write_text(json.dumps(list(self.accounts)), encoding="utf-8")
        client_path = workdir / "client.json"
        client = {
            "client_id": self.static_client_id,
            "client_secret": self.static_client_secret,
            "redirect_uris": list(self.static_redirect_uris),
        }
        client_path.write_text(json.dumps(client), encoding="utf-8")
        command = [
            node,
            "provider.mjs",
            f"--port={self.port}",
            f"--issuer={self.issuer}",
            f"--accounts={accounts_path}",
            f"--client={client_path}",
            "--watch-stdin",
        ]
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=PEER_DIR,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NODE_ENV": "test"},
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if "READY " in self.log():
                return
            if self._process.poll() is not None:
                peer_unavailable(f"oidc-provider exited with status {self._process.returncode}:\n{self.log()[-2000:]}")
            time.sleep(0.05)
        peer_unavailable(f"oidc-provider was not ready within {STARTUP_TIMEOUT:g} s:\n{self.log()[-2000:]}")

    def log(self) -> str:
        """Everything the provider printed so far (stdout and stderr)."""
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def register_client(
        self, redirect_uris: list[str], *, token_endpoint_auth_method: str = "client_secret_basic"
    ) -> tuple[str, str | None]:
        """Register a client by RFC 7591 dynamic registration; returns (client_id, client_secret).

        The secret is None for ``token_endpoint_auth_method="none"`` (a public client).
        """
        metadata = {
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": token_endpoint_auth_method,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            response = client.post(self.registration_endpoint, json=metadata)
        if response.status_code != 201:
            raise AssertionError(f"client registration failed: HTTP {response.status_code} {response.text}")
        registered = response.json()
        return str(registered["client_id"]), registered.get("client_secret")

    def scripted_login(self, authorize_url: str, login: str) -> str:
        """Sign ``login`` in through devInteractions and consent; return the URL the IdP sends the browser to.

        As a browser would, with cookies kept for this call only: GET the authorization URL, then
        follow redirects by hand while they stay on the provider; each interaction page
        (``/interaction/<uid>``) gets the form it shows posted back: ``prompt=login`` with the
        login and a password (ignored by devInteractions), then ``prompt=consent``. The first
        redirect that leaves the provider (the relying party's callback with ``code``, ``state``
        and ``iss``, or with ``error``) is returned without being requested.
        """
        provider = httpx.URL(self.base_url).join("/")
        with httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False) as client:
            response = client.get(authorize_url)
            for _step in range(MAX_LOGIN_STEPS):
                if response.is_redirect:
                    target = response.url.join(response.headers["location"])
                    if target.join("/") != provider:
                        return str(target)
                    response = client.get(target)
                    continue
                prompt = _PROMPT_INPUT.search(response.text) if response.status_code == 200 else None
                if prompt is None or not response.url.path.startswith("/interaction/"):
                    raise AssertionError(
                        f"scripted login: unexpected HTTP {response.status_code} at {response.url}:"
                        f" {response.text[:500]}\n{self.log()[-2000:]}"
                    )
                form = {"prompt": prompt.group(1)}
                if form["prompt"] == "login":
                    form.update(login=login, password="x")
                response = client.post(response.url, data=form)
        raise AssertionError(f"scripted login: still on the provider after {MAX_LOGIN_STEPS} requests")

    def signing_jwks(self) -> dict[str, Any]:
        """The provider's published JWK Set (its public signing keys), fetched now."""
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            response = client.get(self.jwks_uri)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def __enter__(self) -> OidcIdp:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the provider by its PID (SIGTERM, then SIGKILL) and remove its temporary files."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            if process.stdin is not None:
                process.stdin.close()
        self._workdir.cleanup()


@pytest.fixture(scope="session")
def oidc_idp() -> Iterator[OidcIdp]:
    """A real OpenID provider whose issuer is the address it is reached at."""
    with OidcIdp.start() as idp:
        yield idp


@pytest.fixture(scope="session")
def oidc_idp_wrong_issuer() -> Iterator[OidcIdp]:
    """A real OpenID provider calling itself ``http://localhost:PORT``, reached at 127.0.0.1."""
    with OidcIdp.start(issuer_host="localhost") as idp:
        yield idp
