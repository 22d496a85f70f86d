"""End to end, the refusals: a person signs in through Keyhall (a real server) at an OpenID provider
that misbehaves on purpose (``tests.support.hostile_idp``), over real HTTP.

For every bad answer (a forged or wrongly signed ID token, wrong claims, an OAuth error, an HTML
page, a provider gone mid-flight) the callback must end on a plain error page (4xx, never a 500,
no stack trace, no token), no authorization code may reach the product, the connection must stay
unverified, and the organization's audit trail must hold one ``login.failed`` with the reason.
``Mode.GOOD`` first shows that the same provider, answering correctly, signs the person in.

Some answers are signed correctly and still wrong (a NaN or infinite ``exp``, a ``sub`` over the
255 characters of OIDC Core §2): they are refused like the forged ones. Odd but plausible profile
claims (a very long email, a NUL in a name) and a forged callback with a NUL in its ``state``
must end on a page too, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from keyhall.core.vocabulary import Role
from tests.support.api import auth
from tests.support.hostile_idp import HostileIdp, Mode, s256
from tests.support.live import LiveKeyhall
from tests.support.peers import free_port


@dataclass(frozen=True)
class HostileSetup:
    """An organization whose OIDC connection points at the hostile provider, and a product."""

    live: LiveKeyhall
    idp: HostileIdp
    org_id: str
    owner: str
    connection: dict[str, Any]
    client_id: str
    client_secret: str
    product_redirect: str


@dataclass(frozen=True)
class Attempt:
    """One sign-in as far as Keyhall's callback: its answer and what the product sent."""

    callback: httpx.Response
    state: str
    verifier: str
    nonce: str


@pytest.fixture
def hostile_idp() -> Iterator[HostileIdp]:
    with HostileIdp() as idp:
        yield idp


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, hostile_idp: HostileIdp) -> HostileSetup:
    live, idp = live_keyhall, hostile_idp
    suffix = uuid.uuid4().hex[:8]
    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": f"Hostile {suffix}"}, headers=auth(live.instance_token))
        assert org.status_code == 201, org.text
        org_id = org.json()["id"]
        owner = live.issue_key(org_id, Role.OWNER)
        # Created with the provider's real discovery document and JWKS: validation passes.
        body = {"protocol": "oidc", "name": "hostile", "oidc": {
            "issuer": idp.issuer, "client_id": idp.client_id, "client_secret": idp.client_secret,
            "scope": "openid profile email"}}
        created = api.post(f"/v1/organizations/{org_id}/connections", json=body, headers=auth(owner))
        assert created.status_code == 201, created.text
        connection = created.json()
        assert connection["is_verified"] is False
        assert connection["discovered"]["issuer"] == idp.issuer
        idp.allow_redirect_uri(connection["redirect_uri"])
        product_redirect = f"http://127.0.0.1:{free_port()}/product/callback"
        app = api.post("/v1/applications", json={"name": f"Product {suffix}", "redirect_uris": [product_redirect]},
                       headers=auth(live.instance_token))
        assert app.status_code == 201, app.text
    return HostileSetup(live=live, idp=idp, org_id=org_id, owner=owner, connection=connection,
                        client_id=app.json()["client_id"], client_secret=app.json()["client_secret"],
                        product_redirect=product_redirect)


def sign_in(s: HostileSetup, browser: httpx.Client, *, stop_idp_before_callback: bool = False) -> Attempt:
    """Product → Keyhall → provider → Keyhall's callback, with one browser (cookie jar)."""
    state, verifier, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    start = browser.get(f"{s.live.url}/oauth2/authorize", params={
        "client_id": s.client_id, "redirect_uri": s.product_redirect, "response_type": "code",
        "scope": "openid email profile", "state": state, "nonce": nonce, "code_challenge": s256(verifier),
        "code_challenge_method": "S256", "connection": s.connection["id"]})
    assert start.status_code == 303, start.text
    idp_url = start.headers["location"]
    assert idp_url.startswith(s.idp.url("/authorize?"))
    at_idp = browser.get(idp_url)
    assert at_idp.status_code == 302, at_idp.text
    keyhall_callback = at_idp.headers["location"]
    assert keyhall_callback.startswith(s.connection["redirect_uri"] + "?")
    assert "code" in parse_qs(urlsplit(keyhall_callback).query)
    if stop_idp_before_callback:
        s.idp.stop()
    return Attempt(browser.get(keyhall_callback), state, verifier, nonce)


def connection_now(s: HostileSetup) -> dict[str, Any]:
    with s.live.api() as api:
        answer = api.get(f"/v1/organizations/{s.org_id}/connections/{s.connection['id']}", headers=auth(s.owner))
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def login_events(s: HostileSetup, action: str) -> list[dict[str, Any]]:
    with s.live.api() as api:
        answer = api.get(f"/v1/organizations/{s.org_id}/audit-events", params={"action": action},
                         headers=auth(s.owner))
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["data"]
    return events


def test_a_faithful_answer_signs_the_person_in(setup: HostileSetup) -> None:
    s = setup
    with httpx.Client(trust_env=False, timeout=15) as browser:
        attempt = sign_in(s, browser)
    assert attempt.callback.status_code == 303, attempt.callback.text
    back = attempt.callback.headers["location"]
    assert back.startswith(s.product_redirect + "?")
    query = parse_qs(urlsplit(back).query)
    assert query["state"] == [attempt.state]
    assert query["iss"] == [s.live.url]

    # The provider saw a correct request and a correct, PKCE-bound code exchange.
    [authorization] = s.idp.authorizations
    assert authorization.code_challenge_method == "S256"
    assert authorization.nonce
    assert authorization.scope.split() == ["openid", "profile", "email"]
    [token_request] = s.idp.token_requests
    assert token_request.problems == ()
    assert token_request.auth_method == "client_secret_basic"

    # The product redeems its code: the person is the provider's user, in this organization.
    tokens = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, auth=(s.client_id, s.client_secret), data={
        "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": s.product_redirect,
        "code_verifier": attempt.verifier})
    assert tokens.status_code == 200, tokens.text
    keys = KeySet.import_key_set(httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False).json())
    claims = jwt.decode(tokens.json()["id_token"], keys, algorithms=["RS256", "ES256"]).claims
    assert claims["email"] == f"{s.idp.subject}@hostile.example"
    assert claims["nonce"] == attempt.nonce
    assert claims["org_id"] == s.org_id
    assert claims["connection_id"] == s.connection["id"]

    assert connection_now(s)["is_verified"] is True
    assert [e["changes"]["reason"] for e in login_events(s, "login.succeeded")] == ["ok"]
    assert login_events(s, "login.failed") == []


def test_the_fake_provider_itself_refuses_a_wrong_verifier_and_secret(setup: HostileSetup) -> None:
    """What makes the GOOD case meaningful: the provider really checks PKCE and the client secret."""
    s = setup
    with httpx.Client(trust_env=False, timeout=15) as browser:
        start = browser.get(f"{s.live.url}/oauth2/authorize", params={
            "client_id": s.client_id, "redirect_uri": s.product_redirect, "response_type": "code",
            "scope": "openid", "state": "st", "connection": s.connection["id"]})
        at_idp = browser.get(start.headers["location"])
    callback = parse_qs(urlsplit(at_idp.headers["location"]).query)
    [authorization] = s.idp.authorizations
    form = {"grant_type": "authorization_code", "code": callback["code"][0],
            "redirect_uri": authorization.redirect_uri, "code_verifier": "w" * 64}
    wrong_verifier = httpx.post(s.idp.url("/token"), data=form, auth=(s.idp.client_id, s.idp.client_secret),
                                trust_env=False)
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json()["error"] == "invalid_grant"
    wrong_secret = httpx.post(s.idp.url("/token"), data=form, auth=(s.idp.client_id, "nope"), trust_env=False)
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert [r.problems[0] for r in s.idp.token_requests] == [
        "code_verifier does not match the code challenge", "client authentication failed"]


REFUSALS = [
    pytest.param(Mode.TAMPERED_PAYLOAD, "bad_signature", id="tampered-payload"),
    pytest.param(Mode.OTHER_KEY_SAME_KID, "bad_signature", id="other-key-same-kid"),
    pytest.param(Mode.ALG_NONE, "alg_not_allowed", id="alg-none"),
    pytest.param(Mode.HS256_WITH_PUBLIC_KEY, "alg_not_allowed", id="hs256-with-public-key"),
    pytest.param(Mode.EMBEDDED_JWK, "unknown_kid", id="embedded-jwk"),
    pytest.param(Mode.WRONG_AUDIENCE, "wrong_audience", id="wrong-audience"),
    pytest.param(Mode.WRONG_ISSUER, "wrong_issuer", id="wrong-issuer"),
    pytest.param(Mode.EXPIRED, "expired", id="expired"),
    pytest.param(Mode.IAT_IN_FUTURE, "issued_in_future", id="iat-in-future"),
    pytest.param(Mode.NONCE_MISMATCH, "nonce_mismatch", id="nonce-mismatch"),
    pytest.param(Mode.MISSING_NONCE, "nonce_mismatch", id="missing-nonce"),
    pytest.param(Mode.USERINFO_SUB_MISMATCH, "userinfo_failed", id="userinfo-sub-mismatch"),
    pytest.param(Mode.TOKEN_ERROR, "token_error", id="token-error"),
    pytest.param(Mode.TOKEN_HTML, "bad_token_response", id="token-html"),
    pytest.param(Mode.TOKEN_HTML_BAD_GATEWAY, "bad_token_response", id="token-html-502"),
    pytest.param(Mode.UNREACHABLE, "idp_unreachable", id="idp-unreachable"),
    # Signed by the provider's own key, but not a valid ID token all the same.
    pytest.param(Mode.NAN_EXP, "malformed", id="nan-exp"),
    pytest.param(Mode.INFINITE_EXP, "malformed", id="infinite-exp"),
    pytest.param(Mode.LONG_SUBJECT, "malformed", id="sub-over-255-characters"),
]


@pytest.mark.parametrize(("mode", "reason"), REFUSALS)
def test_a_bad_answer_ends_on_a_plain_page_and_an_audit_event(setup: HostileSetup, mode: Mode, reason: str) -> None:
    s = setup
    s.idp.mode = mode
    with httpx.Client(trust_env=False, timeout=15) as browser:
        attempt = sign_in(s, browser, stop_idp_before_callback=mode is Mode.UNREACHABLE)
    page = attempt.callback

    # A refused answer is the client's 4xx; an IdP that cannot be reached is a 502 (bad gateway).
    expected = range(502, 503) if mode is Mode.UNREACHABLE else range(400, 500)
    assert page.status_code in expected, (page.status_code, page.text)
    assert page.headers["content-type"].startswith("text/html")
    assert "We could not sign you in" in page.text
    assert "could not confirm your sign-in" in page.text or "could not reach" in page.text
    assert "Traceback" not in page.text
    assert "location" not in page.headers  # no code goes back to the product
    assert s.product_redirect not in page.text

    # The exchange itself was correct: the refusal is about the provider's answer, not Keyhall's request.
    assert [r.problems for r in s.idp.token_requests] == ([] if mode is Mode.UNREACHABLE else [()])
    # Nothing the provider handed out shows on the page or in the audit trail.
    failures = login_events(s, "login.failed")
    for secret in s.idp.issued:
        assert secret not in page.text
        assert secret not in json.dumps(failures)

    assert connection_now(s)["is_verified"] is False
    assert login_events(s, "login.succeeded") == []
    assert [(e["changes"]["reason"], e["changes"]["connection_id"]) for e in failures] == [
        (reason, s.connection["id"])]
    assert failures[0]["changes"].get("detail"), "the audit event says what was wrong, for the administrator"



@pytest.mark.parametrize("mode", [Mode.LONG_EMAIL, Mode.NUL_IN_NAME], ids=["email-400-characters", "nul-in-name"])
def test_odd_profile_claims_never_break_the_callback(setup: HostileSetup, mode: Mode) -> None:
    """Claims a directory might really hold, signed correctly: Keyhall signs the person in or refuses
    plainly, whatever the database, and never answers 500."""
    s = setup
    s.idp.mode = mode
    with httpx.Client(trust_env=False, timeout=15) as browser:
        page = sign_in(s, browser).callback
    assert page.status_code != 500, page.text
    assert "Traceback" not in page.text
    if page.status_code == 303:
        assert page.headers["location"].startswith(s.product_redirect + "?")
        assert [e["changes"]["reason"] for e in login_events(s, "login.succeeded")] == ["ok"]
        return
    assert 400 <= page.status_code < 500, (page.status_code, page.text)
    assert "We could not sign you in" in page.text
    assert "location" not in page.headers
    assert connection_now(s)["is_verified"] is False
    assert len(login_events(s, "login.failed")) == 1


def test_a_forged_callback_with_a_nul_in_its_state_is_refused_plainly(setup: HostileSetup) -> None:
    """A provider (or anyone) can send the browser back with any query: a NUL byte is not a database error."""
    s = setup
    with httpx.Client(trust_env=False, timeout=15) as browser:
        page = browser.get(s.connection["redirect_uri"], params={"state": "st\x00ate", "code": "c\x00de"})
    assert page.status_code == 400, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "not one Keyhall is waiting for" in page.text


def _threads_inside_idp_calls(besides: list[threading.Thread]) -> list[str]:
    """The threads of this process (the live server's among them), but this one and ``besides``,
    whose stack is inside a call to an IdP: Keyhall's outbound modules or a blocking HTTP client."""
    ours = {threading.get_ident(), *(thread.ident for thread in besides)}
    inside = []
    for ident, frame in sys._current_frames().items():
        files = [entry.filename for entry in traceback.extract_stack(frame)]
        if ident not in ours and any("keyhall/security/outbound" in f or "keyhall/idp/oidc_rp" in f
                                     or "httpcore/_sync" in f for f in files):
            inside.append(" <- ".join(reversed(files[-4:])))
    return inside


def test_callbacks_waiting_on_a_hung_idp_hold_no_thread(setup: HostileSetup) -> None:
    """While people's callbacks wait for a token endpoint that does not answer, no thread of the
    server waits with them (the IdP is asked from the event loop), so a frozen provider cannot
    use up the worker threads every other sign-in and API write needs; each callback still ends
    on its error page once the provider drops the request."""
    s = setup
    s.idp.mode = Mode.TOKEN_HANGS
    answers: list[int] = []

    def one_sign_in() -> None:
        with httpx.Client(trust_env=False, timeout=30) as browser:
            answers.append(sign_in(s, browser).callback.status_code)

    people = [threading.Thread(target=one_sign_in) for _ in range(3)]
    for person in people:
        person.start()
    deadline = time.monotonic() + 15
    while s.idp.hanging < 3:
        assert time.monotonic() < deadline, f"only {s.idp.hanging} token requests reached the provider"
        time.sleep(0.02)
    assert _threads_inside_idp_calls(besides=people) == []
    with s.live.api() as api:  # a sync handler (a worker thread's work) is served meanwhile
        assert api.get("/login").status_code in {200, 400}
    s.idp.release()
    for person in people:
        person.join(timeout=30)
    assert answers == [502, 502, 502]
    assert len(login_events(s, "login.failed")) == 3
