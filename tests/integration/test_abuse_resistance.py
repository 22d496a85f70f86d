"""Abuse resistance of the request budgets: an API key's budget is spent only by calls that prove
its secret, failed authentications are counted per client address, and ``X-Forwarded-For`` is
believed only from ``KEYHALL_TRUSTED_PROXIES`` — checked against a real ``keyhall serve``, since the
in-process test client does not go through uvicorn (whose own proxy-header handling trusts
127.0.0.1 by default)."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.core.vocabulary import Role
from keyhall.runtime import Runtime, utcnow
from keyhall.security.forwarded import client_address, parse_trusted_proxies
from keyhall.security.secrets import new_key
from tests.support.api import Keyhall, auth
from tests.support.database import fresh_database
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port
from tests.support.servers import KeyhallServer, keyhall_cli, keyhall_env
from tests.support.settings import make_settings
from tests.support.slapd import Slapd

BUDGET = 5


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[Keyhall]:
    """A Keyhall of its own (its own counters) whose API budget is ``BUDGET`` calls a minute, on a
    clock stopped in one window."""
    with fresh_database(tmp_path) as url:
        runtime = Runtime.build(make_settings(tmp_path, url, api_rate_limit_per_minute=BUDGET))
        runtime.database.migrate()
        stopped: datetime = utcnow()
        runtime.clock = lambda: stopped  # every call below falls in the same one-minute window
        with TestClient(create_app(runtime.settings, runtime), raise_server_exceptions=False) as client:
            yield Keyhall(client, runtime)
        runtime.database.dispose()


def _wrong_secret(token: str) -> str:
    key_id = token.removeprefix("kh_").split(".", 1)[0]
    return f"kh_{key_id}.not-the-secret"


def test_wrong_secrets_cannot_exhaust_the_instance_admin_keys_budget(throttled: Keyhall) -> None:
    """The attack: the instance-admin key's id (it shows in logs and support tickets) with wrong
    secrets, past the budget. The key's own calls must still go through; the attacker's address
    is the one that runs out."""
    forged = _wrong_secret(throttled.instance_token)
    answers = [throttled.client.get("/v1/organizations", headers=auth(forged)).status_code
               for _ in range(BUDGET + 3)]
    assert answers[:BUDGET] == [401] * BUDGET
    assert set(answers[BUDGET:]) == {429}
    for _ in range(BUDGET):
        assert throttled.client.get("/v1/organizations", headers=auth(throttled.instance_token)).status_code == 200
    # ... and the key's own budget is still counted: one call more is one too many.
    assert throttled.client.get("/v1/organizations", headers=auth(throttled.instance_token)).status_code == 429


def test_every_kind_of_failed_authentication_counts_against_the_address(throttled: Keyhall) -> None:
    tenant_key = throttled.issue_key(None, None)
    failures: list[dict[str, str]] = [
        auth(_wrong_secret(tenant_key)),  # wrong secret
        auth("kh_0123456789abcdef.whatever"),  # unknown key
        auth("not-a-key"),  # malformed token
        {"Authorization": "Basic Zm9vOmJhcg=="},  # not a bearer token
        {},  # nothing at all
    ]
    assert [throttled.client.get("/v1/organizations", headers=h).status_code for h in failures] == [401] * BUDGET
    assert throttled.client.get("/v1/organizations", headers=auth("kh_ffff.x")).status_code == 429
    # A key that authenticates is counted on its own budget, whatever its address did.
    assert throttled.client.get("/v1/organizations", headers=auth(tenant_key)).status_code == 200


def test_the_luzmo_envelope_key_is_charged_only_once_it_authenticates(throttled: Keyhall) -> None:
    tenant = throttled.tenant("Luzmo Budget")
    key_id, secret = tenant.owner.removeprefix("kh_").split(".", 1)

    def call(token: str) -> int:
        body = {"action": "get", "version": "0.1.0", "key": key_id, "token": token, "find": {}}
        return throttled.client.post("/0.1.0/ssoconfig", json=body).status_code

    answers = [call("wrong-secret") for _ in range(BUDGET + 2)]
    assert answers[:BUDGET] == [401] * BUDGET
    assert set(answers[BUDGET:]) == {429}
    assert [call(secret) for _ in range(BUDGET)] == [200] * BUDGET
    assert call(secret) == 429


def test_the_viewer_role_is_charged_like_any_key(throttled: Keyhall) -> None:
    tenant = throttled.tenant("Viewer Budget")
    viewer = throttled.issue_key(tenant.id, Role.VIEWER)
    answers = [throttled.client.get(f"/v1/organizations/{tenant.id}", headers=auth(viewer)).status_code
               for _ in range(BUDGET + 1)]
    assert answers == [200] * BUDGET + [429]


# --- the address behind a proxy -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], "", "203.0.113.9"),  # untrusted peer: header ignored
        ("127.0.0.1", ["198.51.100.1"], "", "127.0.0.1"),  # loopback is not trusted by default
        ("10.0.0.2", ["198.51.100.1"], "10.0.0.0/8", "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1"], "10.0.0.0/8", "198.51.100.1"),  # forged left part ignored
        ("10.0.0.2", ["6.6.6.6", "198.51.100.1, 10.0.0.3"], "10.0.0.0/8", "198.51.100.1"),  # proxy chain
        ("10.0.0.2", ["10.0.0.4, 10.0.0.3"], "10.0.0.0/8", "10.0.0.4"),  # all trusted: left-most
        ("10.0.0.2", ["6.6.6.6, garbage"], "10.0.0.0/8", "10.0.0.2"),  # nonsense ends at the proxy
        ("10.0.0.2", ["[2001:DB8::1]:443"], "10.0.0.0/8", "2001:db8::1"),  # canonical form
        ("::ffff:10.0.0.2", ["198.51.100.1:5555"], "10.0.0.2", "198.51.100.1"),
        ("testclient", ["198.51.100.1"], "10.0.0.0/8", "testclient"),
    ],
)
def test_client_address_is_the_right_most_untrusted_hop(peer: str, header: list[str], trusted: str,
                                                        expected: str) -> None:
    assert client_address(peer, header, parse_trusted_proxies(trusted)) == expected


def _serve(tmp_path: Path, name: str, **extra: str) -> KeyhallServer:
    port = free_port()
    home = tmp_path / name
    env = keyhall_env(home / "data", f"sqlite:///{home / 'keyhall.db'}", f"http://127.0.0.1:{port}", new_key(),
                      KEYHALL_API_RATE_LIMIT_PER_MINUTE="3", KEYHALL_LOGIN_RATE_LIMIT_PER_MINUTE="3",
                      KEYHALL_PURGE_INTERVAL_SECONDS="0", **extra)
    return KeyhallServer(name, port, env, home)


@pytest.fixture
def untrusting(tmp_path: Path) -> Iterator[KeyhallServer]:
    server = _serve(tmp_path, "no-proxy").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[KeyhallServer]:
    server = _serve(tmp_path, "proxied", KEYHALL_TRUSTED_PROXIES="127.0.0.1/32, 10.0.0.0/8").start()
    try:
        yield server
    finally:
        server.stop()


def _statuses(server: KeyhallServer, path: str, headers: list[dict[str, str]]) -> list[int]:
    with server.client() as client:
        return [client.get(path, headers=h).status_code for h in headers]


def test_a_forged_forwarded_for_does_not_buy_a_fresh_budget(untrusting: KeyhallServer) -> None:
    """Each request claims another client address; the peer (127.0.0.1, which uvicorn would trust
    by default) is not a trusted proxy, so they all share one budget. Seven requests at three a
    minute: whatever window boundary falls between them, one window holds at least four."""
    forged = [{"X-Forwarded-For": f"198.51.100.{n}"} for n in range(7)]
    assert 429 in _statuses(untrusting, "/v1/organizations", forged)  # API calls without a key
    assert 429 in _statuses(untrusting, "/.well-known/openid-configuration", forged)  # a sign-in endpoint


def test_a_trusted_proxys_forwarded_for_is_honoured(behind_proxy: KeyhallServer) -> None:
    # One request per client address behind the proxy: nobody is over budget.
    distinct = [{"X-Forwarded-For": f"203.0.113.{n}"} for n in range(8)]
    assert _statuses(behind_proxy, "/v1/organizations", distinct) == [401] * 8
    assert _statuses(behind_proxy, "/.well-known/openid-configuration", distinct) == [200] * 8
    # One client behind the proxy, whatever it writes to the left of what the proxy appended.
    forged_left: list[dict[str, Any]] = [{"X-Forwarded-For": f"6.6.6.{n}, 198.51.100.77"} for n in range(7)]
    assert 429 in _statuses(behind_proxy, "/v1/organizations", forged_left)
    # The proxy's own address (trusted) is never where the counting stops.
    with behind_proxy.client() as client:
        direct = client.get("/v1/organizations", headers={"X-Forwarded-For": "10.0.0.9, 203.0.113.200"})
    assert direct.status_code == 401


# --- SSRF refusals keep the resolver's answers to themselves ----------------------------------


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyhall]:
    """A Keyhall with KEYHALL_ALLOW_INSECURE_IDP_URLS off, as in production (each test makes its own
    organization, and what they try is refused, so they share it)."""
    tmp_path = tmp_path_factory.mktemp("secure")
    with fresh_database(tmp_path) as url:
        runtime = Runtime.build(make_settings(tmp_path, url, allow_insecure_idp_urls=False))
        runtime.database.migrate()
        with TestClient(create_app(runtime.settings, runtime), raise_server_exceptions=False) as client:
            yield Keyhall(client, runtime)
        runtime.database.dispose()


LOOPBACK_WORDS = ("127.0.0.1", "::1", "loopback")


def test_an_oidc_issuer_resolving_to_loopback_is_refused_without_saying_where(secure: Keyhall,
                                                                               oidc_idp: OidcIdp) -> None:
    """The real test IdP listens on 127.0.0.1; an owner probing with ``localhost`` learns that the
    name is refused, not what it resolved to."""
    tenant = secure.tenant("SSRF OIDC")
    response = secure.client.post(f"/v1/organizations/{tenant.id}/connections", headers=auth(tenant.owner), json={
        "protocol": "oidc", "name": "probe",
        "oidc": {"issuer": f"https://localhost:{oidc_idp.port}", "client_id": "c", "client_secret": "s"}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "localhost resolves to a non-public address" in error["message"]
    assert error["details"]["field"] == "oidc.issuer"
    for word in LOOPBACK_WORDS:
        assert word not in response.text


def test_an_ldap_server_resolving_to_loopback_is_refused_without_saying_where(secure: Keyhall,
                                                                               slapd: Slapd) -> None:
    tenant = secure.tenant("SSRF LDAP")
    settings = {**slapd.ldap_settings(server="localhost", security="ldaps"), **slapd.bind_secrets()}
    response = secure.client.post(f"/v1/organizations/{tenant.id}/connections", headers=auth(tenant.owner),
                                  json={"protocol": "ldap", "name": "probe", "ldap": settings})
    assert response.status_code == 422, response.text
    assert "localhost resolves to a non-public address" in response.json()["error"]["message"]
    for word in LOOPBACK_WORDS:
        assert word not in response.text


def test_a_forged_forwarded_for_does_not_reset_the_ldap_address_limit(untrusting: KeyhallServer,
                                                                       slapd: Slapd) -> None:
    """Guessing passwords for ever new usernames through the LDAP form, each attempt claiming another
    client address: the per-address limit (60 per 5 minutes) still stops it, for the addresses are
    not believed. 121 attempts: whatever window boundary falls between them, one holds 61."""
    suffix = uuid.uuid4().hex[:8]
    domain = f"xff-{suffix}.test"
    instance = str(keyhall_cli(untrusting.env, untrusting.workdir, "key", "create", "--instance")["token"])
    with untrusting.client() as api:
        org = api.post("/v1/organizations", json={"name": f"XFF {suffix}"}, headers=auth(instance))
        assert org.status_code == 201, org.text
        org_id = org.json()["id"]
        owner = api.post(f"/v1/organizations/{org_id}/keys", json={"role": "owner"}, headers=auth(instance))
        assert owner.status_code == 201, owner.text
        conn = api.post(f"/v1/organizations/{org_id}/connections", headers=auth(owner.json()["token"]), json={
            "protocol": "ldap", "name": "directory", "domains": [domain],
            "ldap": {**slapd.ldap_settings(), **slapd.bind_secrets()}})
        assert conn.status_code == 201, conn.text
        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        app = api.post("/v1/applications", json={"name": f"XFF {suffix}", "redirect_uris": [redirect_uri],
                                                 "public": True}, headers=auth(instance))
        assert app.status_code == 201, app.text
    challenge = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 64).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": app.json()["client_id"], "redirect_uri": redirect_uri,
                       "scope": "openid", "state": "s", "code_challenge": challenge,
                       "code_challenge_method": "S256", "login_hint": f"someone@{domain}"})
    statuses: list[int] = []
    with untrusting.client() as browser:
        started = browser.get(f"/oauth2/authorize?{query}")
        assert started.status_code == 303, started.text
        form_page = browser.get(started.headers["location"])
        assert form_page.status_code == 200, form_page.text
        fields = dict(re.findall(r'<input[^>]*name="(tx|csrf)"[^>]*value="([^"]+)"', form_page.text))
        assert set(fields) == {"tx", "csrf"}, form_page.text
        action = f"/sso/{conn.json()['id']}/ldap"
        for n in range(121):
            answer = browser.post(action, data={**fields, "username": f"guess-{suffix}-{n}", "password": "x"},
                                  headers={"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"})
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401}
