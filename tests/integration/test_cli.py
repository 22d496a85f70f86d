"""The ``keyhall`` command on a fresh database: its commands run in process through click's runner
(the same ``main``, its exit code, stdout and stderr, with the installation's environment and
working directory), and a few as the real ``python -m keyhall`` in a subprocess: the first run
that makes the key file, a refused command, ``keys rotate`` beside a live server, and ``serve``.

No ``KEYHALL_SECRET_KEYS`` is given, so the command generates its key file in the data directory,
as on a first run. The last tests start ``keyhall serve`` and walk through setting up SSO over HTTP.
Saving an LDAP connection binds at the directory, so the LDAP connections point at the test
``slapd`` on 127.0.0.1 over plain LDAP, which ``KEYHALL_ALLOW_INSECURE_IDP_URLS`` allows.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from keyhall.cli import main
from keyhall.core.access import SYSTEM
from keyhall.core.connection_service import Context, create_connection
from keyhall.core.connections import ConnectionInput
from keyhall.core.validation import validate_model
from keyhall.core.webhook_service import create_endpoint
from keyhall.runtime import Runtime, utcnow
from keyhall.security.secrets import SecretBox, SecretKeyError, new_key, parse_key_list
from keyhall.settings import load_settings
from keyhall.storage.engine import build_engine
from keyhall.storage.models import ConnectionRow, WebhookEndpointRow
from tests.support.database import fresh_database, server_url
from tests.support.peers import free_port
from tests.support.slapd import Slapd

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saml"
COMMAND_TIMEOUT = 60
STARTUP_TIMEOUT = 15.0
#: The test directory is on a loopback address and speaks plain LDAP: development settings only.
INSECURE_IDP = {"KEYHALL_ALLOW_INSECURE_IDP_URLS": "1"}


def directory_settings(directory: Slapd) -> dict[str, Any]:
    """A connection's ``ldap`` settings for the test directory, its service account's password included."""
    return {**directory.ldap_settings(), **directory.bind_secrets()}


@dataclass
class CliEnv:
    """Where one Keyhall installation lives: its data directory and its database."""

    home: Path
    database_url: str

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret_keys"

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHALL_")}
        env.update(KEYHALL_DATA_DIR=str(self.data_dir), KEYHALL_DATABASE_URL=self.database_url,
                   PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """``keyhall ARGS`` in this process; an exception the command let out is in its stderr, with
        its traceback, as the interpreter would have printed it."""
        overlay: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KEYHALL_")}
        overlay.update({k: v for k, v in self.environ(**extra_env).items() if k.startswith("KEYHALL_")})
        with contextlib.chdir(self.home):  # the installation's home: no stray .env file is read
            result = CliRunner().invoke(main, list(args), env=overlay, catch_exceptions=True)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += "".join(traceback.format_exception(result.exception))
        return subprocess.CompletedProcess(["keyhall", *args], result.exit_code, result.stdout, stderr)

    def run_process(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """``python -m keyhall ARGS`` in a subprocess."""
        # cwd is the installation's home so no stray .env file is read.
        return subprocess.run(
            [sys.executable, "-m", "keyhall", *args], cwd=self.home, env=self.environ(**extra_env),
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
        )

    def json(self, *args: str, process: bool = False, **extra_env: str) -> dict[str, Any]:
        result = (self.run_process if process else self.run)(*args, **extra_env)
        assert result.returncode == 0, f"keyhall {' '.join(args)} failed:\n{result.stderr}"
        data: dict[str, Any] = json.loads(result.stdout)
        return data


def backend() -> str:
    return "sqlite" if server_url() is None else "postgresql"


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliEnv]:
    home = tmp_path_factory.mktemp("keyhall-home")
    with fresh_database(home) as url:
        yield CliEnv(home=home, database_url=url)


@pytest.fixture(scope="module")
def acme(cli: CliEnv) -> dict[str, Any]:
    """The installation's first command, a real process: it creates the data directory and key file."""
    return cli.json("org", "create", "Acme Corp", "--slug", "acme", process=True)


# --- organizations and API keys --------------------------------------------------------------


def test_org_create_prints_the_organization_as_json(acme: dict[str, Any]) -> None:
    assert acme["slug"] == "acme"
    assert acme["name"] == "Acme Corp"
    assert uuid.UUID(acme["id"])
    assert acme["admins_may_configure_sso"] is False


def test_first_run_generates_a_private_key_file_and_reuses_it(cli: CliEnv, acme: dict[str, Any]) -> None:
    assert cli.key_file.exists()
    assert cli.key_file.stat().st_mode & 0o777 == 0o600
    keys = parse_key_list(cli.key_file.read_text())
    assert len(keys) == 1

    cli.json("org", "create", "Key File Reuse")
    assert parse_key_list(cli.key_file.read_text()) == keys


def test_org_create_derives_the_slug_from_the_name(cli: CliEnv) -> None:
    created = cli.json("org", "create", "Beta Industries GmbH")
    assert created["slug"] == "beta-industries-gmbh"
    assert created["name"] == "Beta Industries GmbH"


def test_duplicate_slug_fails_with_a_clear_message(cli: CliEnv, acme: dict[str, Any]) -> None:
    result = cli.run_process("org", "create", "Another Acme", "--slug", "acme")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "error:" in result.stderr
    assert "'acme' is already used" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_slug_fails_with_a_clear_message(cli: CliEnv) -> None:
    result = cli.run("org", "create", "Bad Slug", "--slug", "-Bad_Slug-")
    assert result.returncode != 0
    assert "slug" in result.stderr
    assert "Traceback" not in result.stderr


def test_key_create_for_an_organization(cli: CliEnv, acme: dict[str, Any]) -> None:
    for org_ref in ("acme", acme["id"]):
        issued = cli.json("key", "create", "--org", org_ref, "--role", "owner")
        assert set(issued) >= {"key_id", "secret", "token"}
        assert issued["token"] == f"kh_{issued['key_id']}.{issued['secret']}"
        assert issued["organization_id"] == acme["id"]
        assert issued["role"] == "owner"


def test_key_create_instance(cli: CliEnv) -> None:
    issued = cli.json("key", "create", "--instance")
    assert issued["token"] == f"kh_{issued['key_id']}.{issued['secret']}"
    assert issued["organization_id"] is None
    assert issued["role"] == "instance_admin"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "either --org"),
        (("--org", "acme", "--role", "owner", "--instance"), "either --org"),
        (("--org", "acme"), "--role is required"),
        (("--org", "acme", "--role", "superuser"), "superuser"),
    ],
)
def test_key_create_usage_errors(cli: CliEnv, acme: dict[str, Any], args: tuple[str, ...], message: str) -> None:
    result = cli.run("key", "create", *args)
    assert result.returncode == 2
    assert "Usage:" in result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_key_create_for_an_unknown_organization(cli: CliEnv) -> None:
    result = cli.run("key", "create", "--org", "no-such-org", "--role", "owner")
    assert result.returncode != 0
    assert "organization not found" in result.stderr
    assert result.stdout == ""


# --- encryption key rotation -----------------------------------------------------------------


def sealed_blob(database_url: str, row_id: str, column: Any = ConnectionRow.sealed_secrets) -> str:
    engine = build_engine(database_url)
    try:
        with engine.connect() as connection:
            blob = connection.scalar(select(column).where(column.class_.id == row_id))
    finally:
        engine.dispose()
    assert isinstance(blob, str)
    assert blob
    return blob


def test_keys_rotate_reencrypts_stored_secrets_under_a_new_key(tmp_path: Path, slapd: Slapd) -> None:
    with fresh_database(tmp_path) as url:
        env = CliEnv(home=tmp_path, database_url=url)
        env.json("org", "create", "Rotation Ltd", "--slug", "rotation")
        old_keys = parse_key_list(env.key_file.read_text())
        assert len(old_keys) == 1

        # A connection holding a secret, made through the Python API against the same installation.
        runtime = Runtime.build(load_settings(_env_file=None, data_dir=env.data_dir, database_url=url,
                                              secret_keys=None, allow_insecure_idp_urls=True))
        try:
            data = validate_model(ConnectionInput, {
                "protocol": "ldap", "name": "directory", "ldap": directory_settings(slapd),
            })
            ctx = Context(principal=SYSTEM, request_id=None, now=utcnow())
            with runtime.database.unit_of_work() as uow:
                conn = create_connection(uow, ctx, "rotation", data, runtime.inspector)
            with runtime.database.unit_of_work() as uow:  # and a webhook endpoint's signing secret
                hook = create_endpoint(uow, ctx, url="https://hooks.example/in", description=None, event_types=[],
                                       enabled=True, check_url=lambda _url: None)
        finally:
            runtime.database.dispose()
        assert conn.discovered is not None
        assert conn.discovered["contacted"] is True
        secrets = slapd.bind_secrets()
        before = sealed_blob(url, conn.id)
        assert SecretBox(old_keys).open(before) == secrets

        report = env.json("keys", "rotate")

        keys = parse_key_list(env.key_file.read_text())
        assert len(keys) == 2
        assert keys[1] == old_keys[0]  # newest first
        assert keys[0] != old_keys[0]
        assert env.key_file.stat().st_mode & 0o777 == 0o600
        assert report["reencrypted"] >= 1
        assert report["keys"] == 2
        after = sealed_blob(url, conn.id)
        assert after != before
        assert SecretBox([keys[0]]).open(after) == secrets
        with pytest.raises(SecretKeyError):
            SecretBox(old_keys).open(after)

        # With KEYHALL_SECRET_KEYS set, the operator puts the new key first; the file is left alone.
        operator_key = new_key()
        report = env.json("keys", "rotate", KEYHALL_SECRET_KEYS=f"{operator_key},{keys[0]},{keys[1]}")
        assert report == {"reencrypted": 2, "keys": 3}
        assert parse_key_list(env.key_file.read_text()) == keys
        assert SecretBox([operator_key]).open(sealed_blob(url, conn.id)) == secrets
        assert SecretBox([operator_key]).open(sealed_blob(url, hook.id, WebhookEndpointRow.sealed_secrets)) == {
            "secret": hook.secret}


# --- a real server ---------------------------------------------------------------------------


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def running_server(env: CliEnv, **extra_env: str) -> Iterator[Server]:
    """``keyhall serve`` on a free port, answering /healthz; stopped by its PID afterwards."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = env.home / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "keyhall", "serve", "--port", str(port)], cwd=env.home,
            env=env.environ(KEYHALL_PUBLIC_URL=base_url, **extra_env), stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"keyhall serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"keyhall serve did not answer /healthz within {STARTUP_TIMEOUT}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield Server(base_url=base_url, process=process, log=log)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def server(cli: CliEnv) -> Iterator[Server]:
    with running_server(cli, **INSECURE_IDP) as running:
        yield running


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=15.0) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_server_is_live_and_ready(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

    response = http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": backend()}


def test_walkthrough_set_up_sso_over_http(
    cli: CliEnv, acme: dict[str, Any], http: httpx.Client, server: Server, slapd: Slapd
) -> None:
    # The operator: an instance-admin key creates the organization, then its owner's key.
    instance = cli.json("key", "create", "--instance")
    response = http.post("/v1/organizations", json={"name": "Walkthrough Inc", "slug": "walkthrough"},
                         headers=bearer(instance["token"]))
    assert response.status_code == 201, response.text
    org = response.json()
    owner = cli.json("key", "create", "--org", "walkthrough", "--role", "owner")
    assert owner["organization_id"] == org["id"]
    headers = bearer(owner["token"])
    base = "/v1/organizations/walkthrough/connections"

    # The owner: a SAML connection from the IdP's metadata.
    body = {"protocol": "saml", "name": "corp-saml", "domains": ["walkthrough.example.com"],
            "saml": {"metadata_xml": (FIXTURES / "metadata-valid.xml").read_text()}}
    response = http.post(base, json=body, headers={**headers, "X-Request-ID": "walkthrough-create-1"})
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    created = response.json()
    cid = created["id"]
    assert response.headers["location"] == f"{base}/{cid}"
    assert created["organization_id"] == org["id"]
    assert created["protocol"] == "saml"
    assert created["is_verified"] is False
    assert created["acs_url"] == f"{server.base_url}/sso/{cid}/saml/acs"
    assert created["sp_metadata_url"] == f"{server.base_url}/sso/{cid}/saml/metadata"
    assert created["discovered"]["idp_entity_id"] == "https://idp.keyhall.test/saml/metadata"

    response = http.get(f"{base}/{cid}", headers=headers)
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json() == created

    response = http.patch(f"{base}/{cid}", json={"display_name": "Corporate SSO"},
                          headers={**headers, "If-Match": '"1"'})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json()["display_name"] == "Corporate SSO"
    response = http.patch(f"{base}/{cid}", json={"display_name": "Stale"}, headers={**headers, "If-Match": '"1"'})
    assert response.status_code == 412
    assert response.json()["error"]["code"] == "precondition_failed"

    # An LDAP connection: the server binds at the directory; the bind password is stored, never shown.
    body = {"protocol": "ldap", "name": "corp-ldap", "ldap": directory_settings(slapd)}
    response = http.post(base, json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["ldap"]["bind_password_set"] is True
    assert response.json()["discovered"]["contacted"] is True
    assert slapd.service_password not in response.text
    ldap_id = response.json()["id"]

    response = http.get(base, headers=headers)
    assert response.status_code == 200
    assert {c["id"] for c in response.json()["data"]} == {cid, ldap_id}
    assert slapd.service_password not in response.text

    # The audit trail names the request that made the change.
    response = http.get(f"/v1/organizations/walkthrough/audit-events?action=connection.created&target_id={cid}",
                        headers=headers)
    assert response.status_code == 200
    events = response.json()["data"]
    assert [e["request_id"] for e in events] == ["walkthrough-create-1"]
    assert events[0]["actor"] == f"key:{owner['key_id']}"

    # Without a key nothing is shown; another organization's owner sees nothing either.
    assert http.get(base).status_code == 401
    acme_owner = cli.json("key", "create", "--org", "acme", "--role", "owner")
    assert http.get(f"{base}/{cid}", headers=bearer(acme_owner["token"])).status_code == 404
    assert "Traceback" not in server.log.read_text()


def test_openapi_and_docs(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/v1/organizations/{org}/connections" in paths
    assert "/v1/organizations/{org}/connections/{connection_id}" in paths

    response = http.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


def test_request_id_is_echoed_or_generated(http: httpx.Client) -> None:
    response = http.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"

    first = http.get("/healthz").headers["x-request-id"]
    second = http.get("/healthz").headers["x-request-id"]
    assert uuid.UUID(first).version == 4
    assert first != second

    # A value that is not a safe token is not echoed; a fresh id replaces it.
    response = http.get("/healthz", headers={"X-Request-ID": "not safe; <script>"})
    assert response.headers["x-request-id"] != "not safe; <script>"
    assert uuid.UUID(response.headers["x-request-id"]).version == 4

    # Errors carry it too.
    response = http.get("/v1/organizations", headers={"X-Request-ID": "err-456"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "err-456"


def test_a_running_server_keeps_reading_secrets_after_keys_rotate(tmp_path: Path, slapd: Slapd) -> None:
    """``keyhall keys rotate`` is run beside a live installation: the server that was started
    before the rotation must still read the connections whose secrets were re-encrypted."""
    with fresh_database(tmp_path) as url:
        env = CliEnv(home=tmp_path, database_url=url)
        env.json("org", "create", "Live Rotation", "--slug", "live-rotation")
        owner = bearer(env.json("key", "create", "--org", "live-rotation", "--role", "owner")["token"])
        base = "/v1/organizations/live-rotation/connections"
        body = {"protocol": "ldap", "name": "directory", "ldap": directory_settings(slapd)}
        with (running_server(env, **INSECURE_IDP) as live,
              httpx.Client(base_url=live.base_url, timeout=15.0) as client):
            response = client.post(base, json=body, headers=owner)
            assert response.status_code == 201, response.text
            cid = response.json()["id"]

            assert env.json("keys", "rotate", process=True)["reencrypted"] == 1  # beside the server's process

            response = client.get(f"{base}/{cid}", headers=owner)
            assert response.status_code == 200, response.text
            assert response.json()["ldap"]["bind_password_set"] is True
            response = client.patch(f"{base}/{cid}", json={"display_name": "Directory"}, headers=owner)
            assert response.status_code == 200, response.text
            # A changed search base is checked at the directory again, binding with the re-encrypted password.
            checked_at = response.json()["discovered"]["fetched_at"]
            response = client.patch(f"{base}/{cid}", json={"ldap": {"user_search_base": slapd.base_dn}},
                                    headers=owner)
            assert response.status_code == 200, response.text
            assert response.json()["discovered"]["contacted"] is True
            assert response.json()["discovered"]["fetched_at"] != checked_at
