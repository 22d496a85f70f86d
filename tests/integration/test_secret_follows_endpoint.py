"""A stored client secret follows its endpoint, performed as the attack: an owner (or anyone holding an
owner's key) points a working OIDC connection at an endpoint of their own without resending the
secret, then lets a person sign in. Before the rule, Keyhall posted the secret it had stored for the
real IdP to the new token endpoint. Now the move clears it, so the attacker's server (a real
provider of its own, ``tests.support.hostile_idp``, recording every request it receives) sees no
secret, whether the move came through the native API or a dialect.

The victim IdP is the real npm ``oidc-provider``; Keyhall is a real server. The mask sent with a
move is refused naming the secret in each surface's own field name and error shape, and the
secret resent with the new endpoint is kept and works.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.api import auth
from tests.support.hostile_idp import HostileIdp, s256
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.oidc_idp import OidcIdp

MASK = "********"


@pytest.fixture
def attacker() -> Iterator[HostileIdp]:
    with HostileIdp() as idp:
        yield idp


@pytest.fixture
def victim(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> SignInSetup:
    return make_signin_setup(live_keyhall, oidc_idp, "Moved")


def stored_secrets(s: SignInSetup) -> dict[str, str]:
    """What Keyhall holds for the connection (read from its database: the API never shows it)."""
    with s.live.runtime.database.unit_of_work() as uow:
        conn = uow.connections.get_any(str(s.connection["id"]))
    assert conn is not None
    return dict(conn.secrets)


def native_connection(s: SignInSetup) -> dict[str, Any]:
    with s.live.api() as api:
        response = api.get(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}", headers=auth(s.owner))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def start_sign_in(s: SignInSetup, browser: httpx.Client) -> str:
    """The product sends the browser to Keyhall, which sends it on to the connection's IdP: that URL."""
    verifier = secrets.token_urlsafe(48)
    start = browser.get(f"{s.live.url}/oauth2/authorize", params={
        "client_id": s.client_id, "redirect_uri": s.product_redirect, "response_type": "code",
        "scope": "openid email profile", "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
        "code_challenge": s256(verifier), "code_challenge_method": "S256", "connection": s.connection["id"]})
    assert start.status_code == 303, start.text
    return str(start.headers["location"])


def sign_in_at_victim(s: SignInSetup) -> httpx.Response:
    """A whole sign-in through the real IdP; Keyhall's answer at its callback."""
    with httpx.Client(trust_env=False, timeout=15) as browser:
        idp_url = start_sign_in(s, browser)
        assert idp_url.startswith(s.idp.base_url)
        return browser.get(s.idp.scripted_login(idp_url, "alice"))


def sign_in_at_attacker(s: SignInSetup, attacker: HostileIdp) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=15) as browser:
        idp_url = start_sign_in(s, browser)
        assert idp_url.startswith(attacker.url("/authorize?"))
        at_idp = browser.get(idp_url)
        assert at_idp.status_code == 302, at_idp.text
        return browser.get(at_idp.headers["location"])


def assert_no_secret_reached(attacker: HostileIdp, secret: str) -> None:
    token_posts = [r for r in attacker.received if r.method == "POST" and r.path == "/token"]
    assert token_posts, "Keyhall never exchanged the code at the moved endpoint: the attack did not run"
    leaked = [r for r in attacker.received if r.carries(secret)]
    assert leaked == [], "the secret stored for the real IdP reached the attacker's endpoint"


# --- moves, one per surface ------------------------------------------------------------------------

Move = Callable[[SignInSetup, httpx.Client, HostileIdp, dict[str, Any]], httpx.Response]


def native_token_url(s: SignInSetup, api: httpx.Client, attacker: HostileIdp, extra: dict[str, Any]) -> httpx.Response:
    return api.patch(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                     json={"oidc": {"token_url": attacker.url("/token"), **extra}}, headers=auth(s.owner))


def luzmo_token_url(s: SignInSetup, api: httpx.Client, attacker: HostileIdp, extra: dict[str, Any]) -> httpx.Response:
    config = {"token_url": attacker.url("/token"), **extra}  # Luzmo's config names the secret as the core does
    return api.post("/0.1.0/ssoconfig", json={"action": "update", "version": "0.1.0", "id": s.connection["id"],
                                              "properties": {"config": config}}, headers=auth(s.owner))


def native_issuer(s: SignInSetup, api: httpx.Client, attacker: HostileIdp, extra: dict[str, Any]) -> httpx.Response:
    return api.patch(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                     json={"oidc": {"issuer": attacker.issuer, "client_id": attacker.client_id, **extra}},
                     headers=auth(s.owner))


def logto_issuer(s: SignInSetup, api: httpx.Client, attacker: HostileIdp, extra: dict[str, Any]) -> httpx.Response:
    config = {"issuer": attacker.issuer, "clientId": attacker.client_id,
              **({"clientSecret": extra["client_secret"]} if "client_secret" in extra else {})}
    return api.patch(f"/api/sso-connectors/{s.connection['id']}", json={"config": config}, headers=auth(s.owner))


def raidiam_issuer(s: SignInSetup, api: httpx.Client, attacker: HostileIdp, extra: dict[str, Any]) -> httpx.Response:
    body = {"Issuer": attacker.issuer, "ClientId": attacker.client_id,
            **({"ClientSecret": extra["client_secret"]} if "client_secret" in extra else {})}
    return api.put(f"/organisations/{s.org['id']}/authorisationservers/{s.connection['id']}", json=body,
                   headers=auth(s.owner))


TOKEN_URL_MOVES = {"native": native_token_url, "luzmo": luzmo_token_url}
ISSUER_MOVES = {"native": native_issuer, "logto": logto_issuer, "raidiam": raidiam_issuer}

#: Where each surface names the secret in its refusal of the mask.
MASK_REFUSALS: dict[str, tuple[Move, str, Callable[[dict[str, Any]], str]]] = {
    "native": (native_token_url, "oidc.client_secret", lambda body: str(body["error"]["details"]["field"])),
    "luzmo": (luzmo_token_url, "properties.config.client_secret", lambda body: next(iter(body["validation"]))),
    "logto": (logto_issuer, "config.clientSecret", lambda body: str(body["error"]["details"]["field"])),
    "raidiam": (raidiam_issuer, "ClientSecret", lambda body: str(body["errors"][0]).split(":", 1)[0]),
}


@pytest.mark.parametrize("surface", sorted(TOKEN_URL_MOVES))
def test_a_moved_token_url_never_receives_the_stored_secret(
    victim: SignInSetup, attacker: HostileIdp, surface: str
) -> None:
    secret = stored_secrets(victim)["client_secret"]
    with victim.live.api() as api:
        moved = TOKEN_URL_MOVES[surface](victim, api, attacker, {})
    assert moved.status_code == 200, moved.text
    assert secret not in moved.text

    callback = sign_in_at_victim(victim)  # the real IdP signs alice in; Keyhall redeems the code
    assert_no_secret_reached(attacker, secret)
    assert callback.status_code >= 400, callback.text  # the attacker's endpoint refused the bare code
    assert callback.status_code != 500, callback.text
    connection = native_connection(victim)
    assert connection["oidc"]["token_url"] == attacker.url("/token")
    assert connection["oidc"]["client_secret_set"] is False
    assert stored_secrets(victim) == {}
    with victim.live.api() as api:
        events = api.get(f"/v1/organizations/{victim.org['id']}/audit-events",
                         params={"action": "connection.updated"}, headers=auth(victim.owner)).json()["data"]
    cleared = [e for e in events if "oidc.client_secret_set" in e["changes"]]
    assert [e["changes"]["oidc.client_secret_set"] for e in cleared][-1] == {"from": True, "to": False}


@pytest.mark.parametrize("surface", sorted(ISSUER_MOVES))
def test_a_moved_issuer_never_receives_the_stored_secret(
    victim: SignInSetup, attacker: HostileIdp, surface: str
) -> None:
    secret = stored_secrets(victim)["client_secret"]
    attacker.allow_redirect_uri(str(victim.connection["redirect_uri"]))
    with victim.live.api() as api:
        moved = ISSUER_MOVES[surface](victim, api, attacker, {})
    assert moved.status_code == 200, moved.text

    callback = sign_in_at_attacker(victim, attacker)
    assert_no_secret_reached(attacker, secret)
    assert [t.auth_method for t in attacker.token_requests] == ["none"]
    assert 400 <= callback.status_code < 500, callback.text
    connection = native_connection(victim)
    assert connection["oidc"]["issuer"] == attacker.issuer
    assert connection["discovered"]["token_endpoint"] == attacker.url("/token")
    assert connection["oidc"]["client_secret_set"] is False


@pytest.mark.parametrize("surface", sorted(MASK_REFUSALS))
def test_the_mask_with_a_move_is_refused_naming_the_secret(
    victim: SignInSetup, attacker: HostileIdp, surface: str
) -> None:
    move, field, field_of = MASK_REFUSALS[surface]
    before = native_connection(victim)
    with victim.live.api() as api:
        refused = move(victim, api, attacker, {"client_secret": MASK})
    assert refused.status_code == 400, refused.text
    assert field_of(refused.json()) == field
    after = native_connection(victim)
    assert after["oidc"] == before["oidc"]  # nothing written
    assert after["version"] == before["version"]
    assert attacker.received == []  # refused before Keyhall contacted the new endpoint at all


def test_the_secret_sent_with_the_new_endpoint_is_kept_and_used(victim: SignInSetup, attacker: HostileIdp) -> None:
    secret = stored_secrets(victim)["client_secret"]
    with victim.live.api() as api:
        assert native_token_url(victim, api, attacker, {}).status_code == 200
        # Back to the real token endpoint, this time with the secret registered there.
        back = api.patch(f"/v1/organizations/{victim.org['id']}/connections/{victim.connection['id']}",
                         json={"oidc": {"token_url": victim.connection["discovered"]["token_endpoint"],
                                        "client_secret": secret}},
                         headers=auth(victim.owner))
    assert back.status_code == 200, back.text
    assert back.json()["oidc"]["client_secret_set"] is True
    callback = sign_in_at_victim(victim)
    assert callback.status_code == 303, callback.text
    assert callback.headers["location"].startswith(victim.product_redirect + "?")
    assert "code=" in callback.headers["location"]
