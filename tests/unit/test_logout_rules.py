"""The pure rules of logout: the back-channel logout token's claims and retry schedule
(``provider.backchannel``), exact matching of post-logout redirect URIs (``provider.logout``), and
how applications register their logout URIs (``core.applications``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyhall.core.applications import Application, check_backchannel_logout_uri, check_post_logout_redirect_uris
from keyhall.core.sessions import LogoutNotice
from keyhall.core.tokens import PublishedKey, SigningKey
from keyhall.errors import InvalidInput
from keyhall.provider import backchannel
from keyhall.provider.claims import subject_for
from keyhall.provider.logout import LogoutRefused, _redirect, verify_id_token_hint
from keyhall.provider.signing import generate_key, sign

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def notice(**changes: object) -> LogoutNotice:
    values: dict[str, object] = {"id": "n-1", "session_id": "sid-1", "client_id": "app_1", "user_id": "u-1",
                                 "created_at": NOW, "next_attempt_at": NOW, **changes}
    return LogoutNotice(**values)  # type: ignore[arg-type]


def app(uris: list[str]) -> Application:
    return Application(id="app_1", name="Product", public=False, redirect_uris=["https://app.example/cb"],
                       post_logout_redirect_uris=uris)


def test_the_logout_token_carries_what_back_channel_logout_asks_and_no_nonce() -> None:
    claims = backchannel.logout_token_claims(notice(), issuer="https://sso.example", now=NOW)
    assert claims == {"iss": "https://sso.example", "aud": "app_1", "iat": int(NOW.timestamp()),
                      "exp": int(NOW.timestamp()) + 120, "jti": "n-1",
                      "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
                      "sub": subject_for("app_1", "u-1"), "sid": "sid-1"}
    assert "nonce" not in claims


def test_a_failed_delivery_is_retried_later_and_later_then_abandoned() -> None:
    current = notice()
    delays = []
    for _ in backchannel.RETRY_DELAYS:
        current = backchannel.after_attempt(current, NOW, "HTTP 500")
        assert current.abandoned_at is None
        assert current.delivered_at is None
        delays.append(current.next_attempt_at - NOW)
    assert delays == sorted(delays)
    assert sum(delays, timedelta()) >= timedelta(hours=24)
    last = backchannel.after_attempt(current, NOW, "HTTP 500")
    assert last.abandoned_at == NOW
    assert last.attempts == len(backchannel.RETRY_DELAYS) + 1
    assert last.last_error == "HTTP 500"


def test_a_delivered_notice_is_done() -> None:
    done = backchannel.after_attempt(notice(attempts=2, last_error="HTTP 500"), NOW, None)
    assert done.delivered_at == NOW
    assert done.attempts == 3
    assert done.last_error is None


@pytest.mark.parametrize("sent", [
    "https://app.example/out/", "https://APP.example/out", "https://app.example/out?x=1", "https://app.example/o",
    "https://app.example/out/../evil", "https://app.example.evil.test/out", "http://app.example/out",
    "https://app.example/cb",  # a sign-in redirect URI is not a logout one
])
def test_only_an_exactly_registered_post_logout_redirect_is_followed(sent: str) -> None:
    with pytest.raises(LogoutRefused, match="not registered"):
        _redirect(app(["https://app.example/out"]), sent, "st")


def test_the_registered_redirect_keeps_its_query_and_gets_the_state() -> None:
    assert _redirect(app(["https://app.example/out?tenant=a"]), "https://app.example/out?tenant=a",
                     "s 1") == "https://app.example/out?tenant=a&state=s+1"
    assert _redirect(app(["https://app.example/out"]), "https://app.example/out", None) == "https://app.example/out"
    assert _redirect(app([]), None, "st") is None


def test_a_redirect_without_a_named_application_is_refused() -> None:
    with pytest.raises(LogoutRefused, match="id_token_hint or client_id"):
        _redirect(None, "https://app.example/out", "st")


@pytest.mark.parametrize(("uris", "message"), [
    (["http://app.example/out"], "http is allowed only for localhost"),
    (["https://app.example/out#x"], "fragment"),
    (["javascript:alert(1)"], "scheme is not allowed"),
    (["/relative"], "absolute"),
    ([f"https://app.example/{n}" for n in range(21)], "at most 20"),
])
def test_post_logout_redirect_uris_are_checked_like_redirect_uris(uris: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        check_post_logout_redirect_uris(uris)
    assert caught.value.message.startswith("post_logout_redirect_uris:")


@pytest.mark.parametrize("uri", ["https://app.example/bcl#f", "ftp://app.example/bcl", "urn:x:y",
                                 "http://app.example/bcl"])
def test_a_backchannel_logout_uri_is_an_absolute_http_url(uri: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_backchannel_logout_uri(uri)
    assert caught.value.message.startswith("backchannel_logout_uri:")


def test_an_empty_backchannel_logout_uri_is_none() -> None:
    assert check_backchannel_logout_uri("") is None
    assert check_backchannel_logout_uri("https://app.example/bcl?x=1") == "https://app.example/bcl?x=1"


class OneKey:
    """The signing-key repository ``verify_id_token_hint`` reads: one published key."""

    def __init__(self, key: SigningKey):
        self.key = key

    def published(self, now: datetime) -> list[PublishedKey]:
        return [PublishedKey(kid=self.key.kid, alg=self.key.alg, public_jwk=self.key.public_jwk, active=True)]


class HintUow:
    def __init__(self, key: SigningKey):
        self.signing_keys = OneKey(key)


KEY = generate_key("RS256", NOW)


def id_token(**changes: object) -> dict[str, object]:
    return {"iss": "https://sso.example", "sub": "s-1", "aud": "app_1", "sid": "sid-1",
            "iat": int(NOW.timestamp()), "exp": int((NOW + timedelta(hours=1)).timestamp()), **changes}


def test_an_expired_id_token_hint_is_accepted() -> None:
    token = sign(KEY, id_token())
    claims = verify_id_token_hint(HintUow(KEY), token, issuer="https://sso.example",  # type: ignore[arg-type]
                                  now=NOW + timedelta(days=3))
    assert claims["sid"] == "sid-1"


@pytest.mark.parametrize(("claims", "typ"), [
    (id_token(iss="https://other.example"), "JWT"),  # another issuer
    (id_token(), "at+jwt"),  # an access token
    (id_token(), "logout+jwt"),  # a logout token
    (id_token(aud=["app_1", "app_2"]), "JWT"),
])
def test_what_is_not_keyhalls_id_token_is_refused(claims: dict[str, object], typ: str) -> None:
    token = sign(KEY, claims, typ=typ)
    with pytest.raises(LogoutRefused, match="not an ID token"):
        verify_id_token_hint(HintUow(KEY), token, issuer="https://sso.example", now=NOW)  # type: ignore[arg-type]


def test_a_hint_signed_by_another_key_is_refused() -> None:
    token = sign(generate_key("RS256", NOW), id_token())
    with pytest.raises(LogoutRefused):
        verify_id_token_hint(HintUow(KEY), token, issuer="https://sso.example", now=NOW)  # type: ignore[arg-type]
