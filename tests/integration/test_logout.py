"""End to end: sessions and their end (OpenID Connect RP-Initiated Logout 1.0 and Back-Channel
Logout 1.0). A product signs people in through the live Keyhall and the real npm oidc-provider,
logs them out at ``/oauth2/logout``, and receives back-channel logout tokens on a real HTTP server
on 127.0.0.1, where each is verified against Keyhall's JWKS as a product would."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from keyhall import cli
from keyhall.idp.inspector import NetworkInspector
from keyhall.jobs import deliver_logout_notices
from keyhall.provider import backchannel
from keyhall.runtime import Runtime
from keyhall.security.outbound import OutboundPolicy
from keyhall.storage import migrate
from keyhall.storage.engine import build_engine
from keyhall.storage.models import LogoutNoticeRow
from keyhall.storage.purge import purge_expired
from tests.integration.test_access_revocation import payload, refresh, the_user, tokens_for, userinfo
from tests.support.api import auth
from tests.support.database import fresh_database
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.logout_receiver import LogoutReceiver, logout_receiver
from tests.support.oidc_idp import OidcIdp

EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture(scope="module")
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as r:
        yield r


def with_logout(s: SignInSetup, receiver: LogoutReceiver) -> SignInSetup:
    """Register the product's post-logout redirect URI and back-channel logout URI (native API)."""
    with s.live.api() as api:
        patched = api.patch(f"/v1/applications/{s.client_id}", headers=auth(s.live.instance_token),
                            json={"post_logout_redirect_uris": [after_logout(s)],
                                  "backchannel_logout_uri": receiver.url})
    assert patched.status_code == 200, patched.text
    assert patched.json()["post_logout_redirect_uris"] == [after_logout(s)]
    assert patched.json()["backchannel_logout_uri"] == receiver.url
    return s


def after_logout(s: SignInSetup) -> str:
    return s.product_redirect.replace("/callback", "/signed-out")


@pytest.fixture(scope="module")
def shared(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp, receiver: LogoutReceiver) -> SignInSetup:
    return with_logout(make_signin_setup(live_keyhall, oidc_idp, "Logout"), receiver)


@pytest.fixture
def setup(shared: SignInSetup, receiver: LogoutReceiver) -> Iterator[SignInSetup]:
    deliver(shared.live.runtime)  # nothing left over from an earlier test
    receiver.take()
    receiver.fail_next = 0
    return shared


def deliver(runtime: Runtime, later: timedelta = timedelta(0)) -> dict[str, int]:
    clock = runtime.clock
    return deliver_logout_notices(dataclasses.replace(runtime, clock=lambda: clock() + later))


def logout(s: SignInSetup, **params: str) -> httpx.Response:
    return httpx.get(f"{s.live.url}/oauth2/logout", params=params, trust_env=False, timeout=15)


def verified_logout_token(s: SignInSetup, token: str) -> dict[str, Any]:
    """What a product checks (Back-Channel Logout 1.0 §2.6), with a minute's leeway for clocks (the
    retry tests send from a clock moved seconds ahead)."""
    keys = KeySet.import_key_set(httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256"])
    assert decoded.header["typ"] == "logout+jwt"
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": s.live.url},
                          aud={"essential": True, "value": s.client_id},
                          iat={"essential": True}, exp={"essential": True},
                          jti={"essential": True}, leeway=60).validate(decoded.claims)
    claims = dict(decoded.claims)
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims
    return claims


def test_discovery_lists_logout(live_keyhall: LiveKeyhall) -> None:
    discovery = httpx.get(f"{live_keyhall.url}/.well-known/openid-configuration", trust_env=False).json()
    assert discovery["end_session_endpoint"] == f"{live_keyhall.url}/oauth2/logout"
    assert discovery["backchannel_logout_supported"] is True
    assert discovery["backchannel_logout_session_supported"] is True


def test_logout_ends_the_session_redirects_back_and_tells_the_product(
        setup: SignInSetup, receiver: LogoutReceiver) -> None:
    s = setup
    token = tokens_for(s)
    other = tokens_for(s)  # a second sign-in at the same product: a session of its own
    id_claims = payload(token["id_token"])
    assert id_claims["sid"] == payload(token["access_token"])["sid"]
    assert payload(other["id_token"])["sid"] != id_claims["sid"]

    answer = logout(s, id_token_hint=token["id_token"], post_logout_redirect_uri=after_logout(s), state="st-1")
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(after_logout(s) + "?")
    assert parse_qs(urlsplit(location).query) == {"state": ["st-1"]}

    refused = refresh(s, token["refresh_token"])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    assert userinfo(s, token["access_token"]).status_code == 401
    assert refresh(s, other["refresh_token"]).status_code == 200  # the other sign-in stands

    assert deliver(s.live.runtime) == {"delivered": 1, "failed": 0, "abandoned": 0}
    [logout_token] = receiver.take()
    assert receiver.content_types[-1].startswith("application/x-www-form-urlencoded")
    claims = verified_logout_token(s, logout_token)
    assert claims["sid"] == id_claims["sid"]
    assert claims["sub"] == id_claims["sub"]
    assert deliver(s.live.runtime) == {"delivered": 0, "failed": 0, "abandoned": 0}  # sent once

    # The same hint again: the session is already over; nothing more is sent.
    again = logout(s, id_token_hint=token["id_token"])
    assert again.status_code == 200
    assert "You are signed out" in again.text
    assert deliver(s.live.runtime)["delivered"] == 0


def test_an_unregistered_redirect_is_never_followed(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    for target in ("https://attacker.example/phish", after_logout(s) + "/../../evil", after_logout(s) + "?x=1",
                   s.product_redirect):  # a sign-in redirect URI is not a logout one
        answer = logout(s, id_token_hint=token["id_token"], post_logout_redirect_uri=target, state="s")
        assert answer.status_code == 400, (target, answer.text)
        assert "location" not in answer.headers
        assert "not registered" in answer.text
    # Without a hint or client_id nothing names the application whose list would be checked.
    answer = logout(s, post_logout_redirect_uri=after_logout(s))
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert refresh(s, token["refresh_token"]).status_code == 200  # a refused request ended nothing

    # client_id alone may name the application: the person is sent back, no session is known to end.
    answer = logout(s, client_id=s.client_id, post_logout_redirect_uri=after_logout(s))
    assert answer.status_code == 303
    assert answer.headers["location"] == after_logout(s)


def test_forged_and_foreign_hints_are_refused(setup: SignInSetup, oidc_idp: OidcIdp) -> None:
    s = setup
    token = tokens_for(s)
    real = payload(token["id_token"])
    forger = RSAKey.generate_key(2048, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": json.loads(httpx.get(f"{s.live.url}/oauth2/jwks").text)["keys"][0]
                         ["kid"]}, real, forger)
    header, body, signature = token["id_token"].split(".")
    tampered = ".".join([header, body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB"), signature])
    for hint in (forged, tampered, token["access_token"], "not-a-jwt"):
        answer = logout(s, id_token_hint=hint, post_logout_redirect_uri=after_logout(s))
        assert answer.status_code == 400, answer.text
        assert "location" not in answer.headers
    # An application's hint with another application's client_id.
    answer = logout(s, id_token_hint=token["id_token"], client_id=f"app_{uuid.uuid4().hex}")
    assert answer.status_code == 400
    assert "does not match" in answer.text
    assert refresh(s, token["refresh_token"]).status_code == 200


def test_a_failing_product_is_retried_with_the_same_token_id(setup: SignInSetup, receiver: LogoutReceiver) -> None:
    s = setup
    token = tokens_for(s)
    receiver.fail_next = 1
    assert logout(s, id_token_hint=token["id_token"]).status_code == 200
    assert deliver(s.live.runtime) == {"delivered": 0, "failed": 1, "abandoned": 0}
    [first] = receiver.refused[-1:]
    assert deliver(s.live.runtime) == {"delivered": 0, "failed": 0, "abandoned": 0}  # not due yet
    assert deliver(s.live.runtime, later=timedelta(seconds=11)) == {"delivered": 1, "failed": 0, "abandoned": 0}
    [second] = receiver.take()
    assert verified_logout_token(s, second)["jti"] == payload(first)["jti"]


def test_the_ssrf_guard_applies_to_back_channel_logout(setup: SignInSetup, receiver: LogoutReceiver) -> None:
    s = setup
    token = tokens_for(s)
    assert logout(s, id_token_hint=token["id_token"]).status_code == 200
    guarded = dataclasses.replace(s.live.runtime, inspector=NetworkInspector(OutboundPolicy(allow_insecure=False)))
    assert deliver(guarded) == {"delivered": 0, "failed": 1, "abandoned": 0}
    assert receiver.take() == []  # the loopback address was never called
    assert deliver(s.live.runtime, later=timedelta(seconds=11))["delivered"] == 1


def test_disabling_and_deleting_the_user_send_back_channel_logout(
        live_keyhall: LiveKeyhall, oidc_idp: OidcIdp, receiver: LogoutReceiver) -> None:
    s = with_logout(make_signin_setup(live_keyhall, oidc_idp, "LogoutUser"), receiver)
    deliver(s.live.runtime)
    receiver.take()
    first, second = tokens_for(s), tokens_for(s)
    user = the_user(s)
    path = f"/v1/organizations/{s.org['id']}/users/{user['id']}"
    with s.live.api() as api:
        disabled = api.patch(path, json={"disabled": True}, headers=auth(s.owner))
    assert disabled.status_code == 200, disabled.text
    assert deliver(s.live.runtime)["delivered"] == 2
    sids = {verified_logout_token(s, t)["sid"] for t in receiver.take()}
    assert sids == {payload(first["id_token"])["sid"], payload(second["id_token"])["sid"]}

    with s.live.api() as api:
        assert api.patch(path, json={"disabled": False}, headers=auth(s.owner)).status_code == 200
    third = tokens_for(s)
    with s.live.api() as api:
        assert api.delete(path, headers=auth(s.owner)).status_code == 204
    assert deliver(s.live.runtime)["delivered"] == 1
    [deleted] = receiver.take()
    claims = verified_logout_token(s, deleted)
    assert claims["sid"] == payload(third["id_token"])["sid"]
    assert claims["sub"] == payload(third["id_token"])["sub"]
    with s.live.api() as api:
        ended = api.get(f"/v1/organizations/{s.org['id']}/audit-events", params={"action": "session.ended"},
                        headers=auth(s.owner)).json()["data"]
    assert sorted(e["changes"]["reason"] for e in ended) == ["user_deleted", "user_disabled", "user_disabled"]
    with s.live.api() as api:  # announced in the event log too, one event per session
        logged = api.get("/v1/events", params={"types": "session.ended", "limit": 200},
                         headers=auth(s.live.instance_token)).json()["data"]
    mine = [e for e in logged if e["organization_id"] == s.org["id"]]
    assert sorted((e["data"]["reason"], e["data"]["user_id"]) for e in mine) == [
        ("user_deleted", user["id"]), ("user_disabled", user["id"]), ("user_disabled", user["id"])]
    assert {e["data"]["session_id"] for e in mine} == sids | {claims["sid"]}


def test_logout_uris_are_validated_like_redirect_uris(live_keyhall: LiveKeyhall) -> None:
    with live_keyhall.api() as api:
        for body, field in (({"post_logout_redirect_uris": ["http://evil.example/out"]}, "post_logout_redirect_uris"),
                            ({"post_logout_redirect_uris": ["javascript:alert(1)"]}, "post_logout_redirect_uris"),
                            ({"backchannel_logout_uri": "https://app.example/bcl#frag"}, "backchannel_logout_uri"),
                            ({"backchannel_logout_uri": "ftp://app.example/bcl"}, "backchannel_logout_uri")):
            made = api.post("/v1/applications", headers=auth(live_keyhall.instance_token),
                            json={"name": "Bad", "redirect_uris": ["https://app.example/cb"], **body})
            assert made.status_code == 400, made.text
            assert field in made.text


def test_sent_and_abandoned_notices_are_purged_after_a_week(tmp_path: Path) -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def notice(notice_id: str, **times: datetime) -> LogoutNoticeRow:
        return LogoutNoticeRow(id=notice_id, session_id="s", client_id="app", user_id="u",
                               created_at=now - timedelta(days=10), next_attempt_at=now, attempts=1,
                               **{"delivered_at": None, "abandoned_at": None, **times})

    with fresh_database(tmp_path) as url:
        engine = build_engine(url)
        try:
            migrate.upgrade(engine)
            with Session(engine) as session, session.begin():
                session.add_all([notice("sent-old", delivered_at=now - timedelta(days=8)),
                                 notice("sent-recent", delivered_at=now - timedelta(days=6)),
                                 notice("abandoned-old", abandoned_at=now - timedelta(days=8)),
                                 notice("waiting")])
            assert purge_expired(engine, now)["logout_notices"] == 2
            with Session(engine) as session:
                assert set(session.scalars(select(LogoutNoticeRow.id))) == {"sent-recent", "waiting"}
        finally:
            engine.dispose()


def test_keyhall_app_create_registers_the_logout_uris(live_keyhall: LiveKeyhall,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # In process, on the live server's runtime (and its database pool, closed with the server).
    monkeypatch.setattr(cli, "_runtime", lambda: live_keyhall.runtime)
    result = CliRunner().invoke(cli.main, [
        "app", "create", "--name", "CLI product", "--redirect-uri", "https://app.example/cb",
        "--post-logout-redirect-uri", "https://app.example/out", "--post-logout-redirect-uri",
        "https://app.example/bye", "--backchannel-logout-uri", "https://app.example/bcl"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["post_logout_redirect_uris"] == ["https://app.example/out", "https://app.example/bye"]
    assert printed["backchannel_logout_uri"] == "https://app.example/bcl"
    with live_keyhall.api() as api:
        stored = api.get(f"/v1/applications/{printed['client_id']}", headers=auth(live_keyhall.instance_token))
    assert stored.json()["post_logout_redirect_uris"] == printed["post_logout_redirect_uris"]

    refused = CliRunner().invoke(cli.main, [
        "app", "create", "--name", "Bad", "--redirect-uri", "https://app.example/cb",
        "--backchannel-logout-uri", "https://app.example/bcl#x"])
    assert refused.exit_code != 0
    assert "backchannel_logout_uri" in refused.output


def test_patch_changes_and_removes_the_logout_uris(live_keyhall: LiveKeyhall) -> None:
    admin = auth(live_keyhall.instance_token)
    with live_keyhall.api() as api:
        made = api.post("/v1/applications", headers=admin,
                        json={"name": "Patched", "redirect_uris": ["https://app.example/cb"],
                              "post_logout_redirect_uris": ["https://app.example/out"],
                              "backchannel_logout_uri": "https://app.example/bcl"})
        assert made.status_code == 201, made.text
        path = f"/v1/applications/{made.json()['client_id']}"
        untouched = api.patch(path, headers=admin, json={"name": "Renamed"})
        assert untouched.json()["backchannel_logout_uri"] == "https://app.example/bcl"
        refused = api.patch(path, headers=admin, json={"post_logout_redirect_uris": ["http://app.example/out"],
                                                        "backchannel_logout_uri": None})
        assert refused.status_code == 400, refused.text
        assert api.get(path, headers=admin).json()["backchannel_logout_uri"] == "https://app.example/bcl"
        cleared = api.patch(path, headers=admin, json={"post_logout_redirect_uris": [], "backchannel_logout_uri": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["post_logout_redirect_uris"] == []
    assert cleared.json()["backchannel_logout_uri"] is None


def test_a_notice_is_claimed_by_one_sender_at_a_time(setup: SignInSetup, receiver: LogoutReceiver) -> None:
    """Several instances run the notifier: a claim (committed before the POST) keeps the others off."""
    s = setup
    assert logout(s, id_token_hint=tokens_for(s)["id_token"]).status_code == 200
    runtime = s.live.runtime
    with runtime.database.unit_of_work() as first, runtime.database.unit_of_work() as second:
        claimed = backchannel.claim_due(first, issuer=s.live.url, now=runtime.clock(), limit=10)
        assert len(claimed) == 1
        assert backchannel.claim_due(second, issuer=s.live.url, now=runtime.clock(), limit=10) == []
    assert deliver(runtime) == {"delivered": 0, "failed": 0, "abandoned": 0}  # still reserved
    # The claimer never answered (a crashed instance): once the claim lapses, another sends it.
    assert deliver(runtime, later=backchannel.CLAIM_LEASE + timedelta(seconds=1))["delivered"] == 1
    assert payload(receiver.take()[0])["jti"] == claimed[0].notice.id  # signed at a clock minutes ahead
