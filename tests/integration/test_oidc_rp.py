"""The relying party's back channel, against the real oidc-provider.

A whole authorization code flow with PKCE runs against ``oidc_idp`` (npm oidc-provider): the
browser part is scripted (``OidcIdp.scripted_login``), then Keyhall's code exchanges the code,
reads the keys through ``JwksCache``, validates the ID token and calls UserInfo. The static
server only serves what the real provider cannot be made to do (rotating or broken JWK Sets);
a small recording server checks what ``post_form`` and ``fetch`` put on the wire, from a worker
thread (``keyhall.security.outbound``) and from the event loop (``keyhall.security.outbound_async``).
The back channel's functions are coroutines: each is run here on an event loop of its own, as a
sign-in's callback runs them on the server's.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from joserfc.jwk import RSAKey

from keyhall.errors import IdPLoginError, OutboundFetchError, UnsafeURL
from keyhall.idp import oidc_rp
from keyhall.idp.oidc import inspect_oidc_provider
from keyhall.idp.oidc_rp import JwksCache, TokenResponse, choose_token_auth_method
from keyhall.protocols.oidc.discovery import ProviderMetadata
from keyhall.protocols.oidc.id_token import unverified_kid, validate_id_token
from keyhall.protocols.oidc.pkce import new_code_verifier, s256_challenge
from keyhall.security import outbound, outbound_async
from keyhall.security.outbound import FetchedDocument, OutboundPolicy
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port
from tests.support.static_http import PromptlyClosingHTTPServer, StaticHttpServer

pytestmark = pytest.mark.peers

INSECURE = OutboundPolicy(allow_insecure=True, timeout=5.0)
T = TypeVar("T")


def on_a_loop(call: Callable[[], Awaitable[T]], policy: OutboundPolicy) -> T:
    """``call()`` on an event loop of its own, whose connections are closed before it ends (as the
    app closes its loop's at shutdown)."""
    async def run() -> T:
        try:
            return await call()
        finally:
            await outbound_async.close_pools(policy)

    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # another test may leave this thread's loop running
        return thread.submit(asyncio.run, run()).result()


def exchange_code(**arguments: Any) -> TokenResponse:
    return on_a_loop(lambda: oidc_rp.exchange_code(**arguments), arguments["policy"])


def fetch_userinfo(**arguments: Any) -> dict[str, Any]:
    return on_a_loop(lambda: oidc_rp.fetch_userinfo(**arguments), arguments["policy"])


class Jwks:
    """A ``JwksCache`` asked from a new event loop at each call."""

    def __init__(self, **options: Any) -> None:
        self.cache = JwksCache(**options)

    def get(self, jwks_uri: str, policy: OutboundPolicy, *, kid: str | None = None) -> dict[str, Any]:
        return on_a_loop(lambda: self.cache.get(jwks_uri, policy, kid=kid), policy)

    def invalidate(self, jwks_uri: str | None = None) -> None:
        self.cache.invalidate(jwks_uri)
REDIRECT_URI = "http://127.0.0.1:9/sso/conn_test/oidc/callback"  # never requested


@dataclass(frozen=True)
class SignedIn:
    """What the browser brought back to the callback, and what the RP kept for it."""

    client_id: str
    client_secret: str | None
    code: str
    verifier: str
    nonce: str


@pytest.fixture(scope="module")
def metadata(oidc_idp: OidcIdp) -> ProviderMetadata:
    return inspect_oidc_provider(issuer=oidc_idp.issuer, discovery_url=None, policy=INSECURE).metadata


def sign_in(
    idp: OidcIdp, metadata: ProviderMetadata, *, login: str = "alice", auth_method: str = "client_secret_basic"
) -> SignedIn:
    client_id, client_secret = idp.register_client([REDIRECT_URI], token_endpoint_auth_method=auth_method)
    verifier, state, nonce = new_code_verifier(), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile",
        "state": state,
        "nonce": nonce,
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
    }
    callback = httpx.URL(idp.scripted_login(f"{metadata.authorization_endpoint}?{urlencode(query)}", login))
    assert str(callback.copy_with(query=None)) == REDIRECT_URI
    assert callback.params["state"] == state
    assert callback.params["iss"] == idp.issuer  # RFC 9207
    return SignedIn(client_id, client_secret, callback.params["code"], verifier, nonce)


def exchange(
    metadata: ProviderMetadata, signed_in: SignedIn, *, verifier: str | None = None, auth_method: str | None = None
) -> TokenResponse:
    method = auth_method or choose_token_auth_method(
        metadata.token_endpoint_auth_methods_supported, None, signed_in.client_secret is not None
    )
    return exchange_code(
        token_endpoint=metadata.token_endpoint,
        code=signed_in.code,
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier or signed_in.verifier,
        client_id=signed_in.client_id,
        client_secret=signed_in.client_secret,
        auth_method=method,
        policy=INSECURE,
    )


def validated_claims(metadata: ProviderMetadata, tokens: TokenResponse, signed_in: SignedIn) -> dict[str, Any]:
    jwks = Jwks().get(metadata.jwks_uri, INSECURE, kid=unverified_kid(tokens.id_token))
    return validate_id_token(
        tokens.id_token,
        jwks=jwks,
        issuer=metadata.issuer,
        client_id=signed_in.client_id,
        nonce=signed_in.nonce,
        now=datetime.now(UTC),
    )


# --- the code flow ---------------------------------------------------------------------------------


def test_code_flow_with_pkce_ends_in_a_valid_id_token(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    signed_in = sign_in(oidc_idp, metadata)
    tokens = exchange(metadata, signed_in)
    assert tokens.token_type.lower() == "bearer"
    assert tokens.access_token
    assert tokens.expires_in is not None
    assert tokens.expires_in > 0
    assert tokens.scope is not None
    assert set(tokens.scope.split()) >= {"openid", "email", "profile"}
    claims = validated_claims(metadata, tokens, signed_in)
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["nonce"] == signed_in.nonce
    assert claims["aud"] == signed_in.client_id
    assert claims["iss"] == oidc_idp.issuer


def test_token_response_repr_hides_the_tokens(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    tokens = exchange(metadata, sign_in(oidc_idp, metadata))
    shown = repr(tokens)
    assert tokens.id_token not in shown
    assert tokens.access_token not in shown
    assert "Bearer" in shown


def test_provider_advertises_basic_which_is_chosen(metadata: ProviderMetadata) -> None:
    supported = metadata.token_endpoint_auth_methods_supported
    assert supported is not None
    assert "client_secret_basic" in supported
    assert choose_token_auth_method(supported, None, True) == "client_secret_basic"


def test_wrong_verifier_is_refused_with_invalid_grant(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    signed_in = sign_in(oidc_idp, metadata)
    with pytest.raises(IdPLoginError) as caught:
        exchange(metadata, signed_in, verifier=new_code_verifier())
    assert caught.value.reason == "token_error"
    assert caught.value.details["error"] == "invalid_grant"
    assert caught.value.details["reason"] == "token_error"
    assert caught.value.code == "idp_login_failed"
    assert "invalid_grant" in caught.value.message
    assert signed_in.code not in caught.value.message


def test_a_code_is_good_once(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    signed_in = sign_in(oidc_idp, metadata)
    exchange(metadata, signed_in)
    with pytest.raises(IdPLoginError) as caught:
        exchange(metadata, signed_in)
    assert caught.value.reason == "token_error"
    assert caught.value.details["error"] == "invalid_grant"


def test_wrong_client_secret_is_invalid_client(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    signed_in = sign_in(oidc_idp, metadata)
    forged = SignedIn(signed_in.client_id, "not-the-secret", signed_in.code, signed_in.verifier, signed_in.nonce)
    with pytest.raises(IdPLoginError) as caught:
        exchange(metadata, forged)
    assert caught.value.reason == "token_error"
    assert caught.value.details["error"] == "invalid_client"
    assert caught.value.details["status"] == 401
    assert "not-the-secret" not in caught.value.message


def test_client_secret_post_client(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    signed_in = sign_in(oidc_idp, metadata, auth_method="client_secret_post")
    method = choose_token_auth_method(metadata.token_endpoint_auth_methods_supported, "client_secret_post", True)
    assert method == "client_secret_post"
    tokens = exchange(metadata, signed_in, auth_method=method)
    assert validated_claims(metadata, tokens, signed_in)["sub"] == "alice"


def test_public_client_with_pkce_only(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    signed_in = sign_in(oidc_idp, metadata, auth_method="none", login="bob")
    assert signed_in.client_secret is None
    tokens = exchange(metadata, signed_in)  # chooses "none": no secret
    claims = validated_claims(metadata, tokens, signed_in)
    assert claims["sub"] == "bob"
    assert claims["email"] == "bob@example.com"


def test_unreachable_token_endpoint() -> None:
    with pytest.raises(IdPLoginError) as caught:
        exchange_code(
            token_endpoint=f"http://127.0.0.1:{free_port()}/token",
            code="code",
            redirect_uri=REDIRECT_URI,
            code_verifier=new_code_verifier(),
            client_id="client",
            client_secret="secret",
            auth_method="client_secret_basic",
            policy=INSECURE,
        )
    assert caught.value.reason == "idp_unreachable"
    assert "connection refused" in caught.value.message


@pytest.mark.parametrize(
    ("supported", "configured", "has_secret", "chosen"),
    [
        (None, None, True, "client_secret_basic"),  # Discovery §3 default
        (["client_secret_post", "client_secret_basic"], None, True, "client_secret_basic"),
        (["client_secret_post"], None, True, "client_secret_post"),
        (["client_secret_basic", "client_secret_post"], "client_secret_post", True, "client_secret_post"),
        (None, "client_secret_post", True, "client_secret_post"),
        (["client_secret_basic"], "client_secret_post", True, "client_secret_basic"),  # not supported there
        (["private_key_jwt", "client_secret_basic"], "private_key_jwt", True, "client_secret_basic"),  # not ours
        (["client_secret_basic"], "client_secret_basic", False, "none"),  # no secret to send
        (None, None, False, "none"),
        (["none", "client_secret_basic"], "none", True, "none"),
    ],
)
def test_choose_token_auth_method(
    supported: list[str] | None, configured: str | None, has_secret: bool, chosen: str
) -> None:
    assert choose_token_auth_method(supported, configured, has_secret) == chosen


# --- UserInfo ----------------------------------------------------------------------------------------


def test_userinfo_with_the_access_token(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    tokens = exchange(metadata, sign_in(oidc_idp, metadata))
    assert metadata.userinfo_endpoint is not None
    claims = fetch_userinfo(
        userinfo_endpoint=metadata.userinfo_endpoint,
        access_token=tokens.access_token,
        policy=INSECURE,
        expected_sub="alice",
    )
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True


def test_userinfo_about_another_user_is_refused(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    tokens = exchange(metadata, sign_in(oidc_idp, metadata))
    assert metadata.userinfo_endpoint is not None
    with pytest.raises(IdPLoginError) as caught:
        fetch_userinfo(
            userinfo_endpoint=metadata.userinfo_endpoint,
            access_token=tokens.access_token,
            policy=INSECURE,
            expected_sub="bob",
        )
    assert caught.value.reason == "userinfo_failed"
    assert "§5.3.4" in caught.value.message


def test_userinfo_with_a_bad_token(metadata: ProviderMetadata) -> None:
    assert metadata.userinfo_endpoint is not None
    with pytest.raises(IdPLoginError) as caught:
        fetch_userinfo(userinfo_endpoint=metadata.userinfo_endpoint, access_token="made-up", policy=INSECURE)
    assert caught.value.reason == "userinfo_failed"
    assert caught.value.details["status"] == 401
    assert "made-up" not in caught.value.message


# --- JwksCache ---------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwks_of(*kids: str) -> bytes:
    keys = [RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}) for kid in kids]
    return json.dumps({"keys": [key.as_dict(private=False) for key in keys]}).encode()


def test_real_provider_jwks_holds_the_token_kid(oidc_idp: OidcIdp, metadata: ProviderMetadata) -> None:
    tokens = exchange(metadata, sign_in(oidc_idp, metadata))
    kid = unverified_kid(tokens.id_token)
    assert kid is not None
    document = Jwks().get(metadata.jwks_uri, INSECURE, kid=kid)
    assert kid in {key["kid"] for key in document["keys"]}
    assert document == oidc_idp.signing_jwks()


def test_cache_serves_within_ttl_and_refreshes_after(static_http: StaticHttpServer) -> None:
    clock = FakeClock()
    cache = Jwks(clock=clock)
    url = static_http.route("/jwks", body=jwks_of("k1"))
    first = cache.get(url, INSECURE, kid="k1")
    clock.now += 299
    assert cache.get(url, INSECURE, kid="k1") == first
    assert cache.get(url, INSECURE) == first
    assert static_http.hits == ["/jwks"]
    clock.now += 1
    cache.get(url, INSECURE, kid="k1")
    assert static_http.hits == ["/jwks", "/jwks"]


def test_unknown_kid_refetches_at_most_every_30_seconds(static_http: StaticHttpServer) -> None:
    clock = FakeClock()
    cache = Jwks(clock=clock)
    url = static_http.route("/jwks", body=jwks_of("old"))
    cache.get(url, INSECURE, kid="old")
    static_http.route("/jwks", body=jwks_of("old", "new"))  # the provider rotates its keys
    clock.now += 10
    for _ in range(20):  # a flood of tokens with kids the set lacks, within 30 s of the last read
        document = cache.get(url, INSECURE, kid="new")
        assert [key["kid"] for key in document["keys"]] == ["old"]
    assert len(static_http.hits) == 1
    clock.now += 20
    document = cache.get(url, INSECURE, kid="new")
    assert [key["kid"] for key in document["keys"]] == ["old", "new"]
    assert len(static_http.hits) == 2
    clock.now += 31
    for _ in range(5):
        cache.get(url, INSECURE, kid="bogus")
    assert len(static_http.hits) == 3  # one refetch for the bogus kid, then the throttle holds


def test_failed_refetch_for_unknown_kid_keeps_the_cached_set(static_http: StaticHttpServer) -> None:
    clock = FakeClock()
    cache = Jwks(clock=clock)
    url = static_http.route("/jwks", body=jwks_of("k1"))
    cache.get(url, INSECURE)
    static_http.route("/jwks", status=503, content_type="text/plain", body=b"down")
    clock.now += 60
    assert [key["kid"] for key in cache.get(url, INSECURE, kid="k2")["keys"]] == ["k1"]
    assert [key["kid"] for key in cache.get(url, INSECURE, kid="k2")["keys"]] == ["k1"]
    assert len(static_http.hits) == 2  # the failed attempt counts for the throttle
    clock.now += 300
    with pytest.raises(IdPLoginError) as caught:  # past the TTL nothing stale is served
        cache.get(url, INSECURE)
    assert caught.value.reason == "idp_unreachable"
    assert "503" in caught.value.message


def test_cached_document_cannot_be_changed_by_a_caller(static_http: StaticHttpServer) -> None:
    cache = Jwks()
    url = static_http.route("/jwks", body=jwks_of("k1"))
    cache.get(url, INSECURE)["keys"].clear()
    assert len(cache.get(url, INSECURE)["keys"]) == 1


def test_concurrent_misses_fetch_once(static_http: StaticHttpServer) -> None:
    cache = JwksCache()
    url = static_http.route("/jwks", body=jwks_of("k1"), delay=0.3)

    async def four_sign_ins() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(cache.get(url, INSECURE, kid="k1") for _ in range(4))))

    results = on_a_loop(four_sign_ins, INSECURE)
    assert len(results) == 4
    assert all(result == results[0] for result in results)
    assert static_http.hits == ["/jwks"]


def test_invalidate_forgets_a_set(static_http: StaticHttpServer) -> None:
    cache = Jwks()
    url = static_http.route("/jwks", body=jwks_of("k1"))
    cache.get(url, INSECURE)
    cache.invalidate(url)
    cache.get(url, INSECURE)
    assert len(static_http.hits) == 2


def test_unusable_jwks_is_jwks_invalid(static_http: StaticHttpServer) -> None:
    url = static_http.route("/jwks", body=b'{"keys": []}')
    with pytest.raises(IdPLoginError) as caught:
        Jwks().get(url, INSECURE)
    assert caught.value.reason == "jwks_invalid"
    assert "empty" in caught.value.message


def test_unreachable_jwks_is_idp_unreachable() -> None:
    with pytest.raises(IdPLoginError) as caught:
        Jwks().get(f"http://127.0.0.1:{free_port()}/jwks", INSECURE)
    assert caught.value.reason == "idp_unreachable"


# --- post_form and request headers on the wire -------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _RecorderState:
    requests: list[Recorded] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)


class _RecordingHandler(BaseHTTPRequestHandler):
    server: _RecordingServer
    protocol_version = "HTTP/1.1"
    timeout = 5

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        state = self.server.state
        state.requests.append(Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        status, headers, payload = state.answers.get(self.path, (404, {}, b"{}"))
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _RecordingServer(PromptlyClosingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.state = _RecorderState()


@pytest.fixture
def recorder() -> Iterator[_RecordingServer]:
    server = _RecordingServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def base_url(server: _RecordingServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@dataclass(frozen=True)
class Sender:
    """``post_form`` and ``fetch`` of one of the two outbound modules, called alike."""

    post_form: Callable[..., FetchedDocument]
    fetch: Callable[..., FetchedDocument]


def _on_a_loop(coroutine_function: Callable[..., Awaitable[FetchedDocument]]) -> Callable[..., FetchedDocument]:
    def call(*args: Any, **kwargs: Any) -> FetchedDocument:
        [policy] = [value for value in (*args, *kwargs.values()) if isinstance(value, OutboundPolicy)]
        return on_a_loop(lambda: coroutine_function(*args, **kwargs), policy)

    return call


@pytest.fixture(params=["thread", "event_loop"])
def sender(request: pytest.FixtureRequest) -> Sender:
    if request.param == "thread":
        return Sender(outbound.post_form, outbound.fetch)
    return Sender(_on_a_loop(outbound_async.post_form), _on_a_loop(outbound_async.fetch))


def test_post_form_sends_the_form_and_headers(recorder: _RecordingServer, sender: Sender) -> None:
    recorder.state.answers["/token"] = (200, {}, b'{"ok": true}')
    answer = sender.post_form(
        f"{base_url(recorder)}/token", {"a": "1 2", "b": "x&y=z"}, INSECURE, headers={"Authorization": "Basic Zm9v"}
    )
    assert (answer.status, json.loads(answer.body)) == (200, {"ok": True})
    [request] = recorder.state.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"] == "Basic Zm9v"
    assert request.headers["accept"] == "application/json"
    assert parse_qs(request.body.decode()) == {"a": ["1 2"], "b": ["x&y=z"]}


def test_cookies_an_idp_sets_are_never_sent_back(recorder: _RecordingServer, sender: Sender) -> None:
    """The pooled client serves every sign-in: a cookie set during one person's call must not
    ride along with the next call (anyone's)."""
    recorder.state.answers["/token"] = (200, {"Set-Cookie": "session=alice; Path=/"}, b'{"ok": true}')
    policy = OutboundPolicy(allow_insecure=True)
    sender.post_form(f"{base_url(recorder)}/token", {"a": "1"}, policy)
    sender.post_form(f"{base_url(recorder)}/token", {"a": "2"}, policy)
    sender.fetch(f"{base_url(recorder)}/token", policy)
    assert [r.headers.get("cookie") for r in recorder.state.requests] == [None, None, None]


def test_post_form_hands_back_error_documents_on_request(recorder: _RecordingServer, sender: Sender) -> None:
    recorder.state.answers["/token"] = (400, {}, b'{"error": "invalid_grant"}')
    url = f"{base_url(recorder)}/token"
    answer = sender.post_form(url, {"a": "1"}, INSECURE, raise_for_status=False)
    assert (answer.status, json.loads(answer.body)) == (400, {"error": "invalid_grant"})
    with pytest.raises(OutboundFetchError) as caught:
        sender.post_form(url, {"a": "1"}, INSECURE)
    assert caught.value.message == f"POST {url} answered HTTP 400 Bad Request"
    assert caught.value.details["status"] == 400


def test_post_form_does_not_follow_redirects(recorder: _RecordingServer, sender: Sender) -> None:
    recorder.state.answers["/token"] = (307, {"Location": "/elsewhere"}, b"")
    url = f"{base_url(recorder)}/token"
    assert sender.post_form(url, {"a": "1"}, INSECURE, raise_for_status=False).status == 307
    with pytest.raises(OutboundFetchError):
        sender.post_form(url, {"a": "1"}, INSECURE)
    assert [r.path for r in recorder.state.requests] == ["/token", "/token"]


def test_post_form_keeps_the_size_cap(recorder: _RecordingServer, sender: Sender) -> None:
    recorder.state.answers["/token"] = (200, {}, b" " * 4096)
    with pytest.raises(OutboundFetchError) as caught:
        sender.post_form(f"{base_url(recorder)}/token", {}, OutboundPolicy(allow_insecure=True, max_bytes=1024))
    assert "larger than the 1024-byte limit" in caught.value.message


def test_post_form_keeps_the_ssrf_guard(recorder: _RecordingServer, sender: Sender) -> None:
    with pytest.raises(UnsafeURL):
        sender.post_form(f"{base_url(recorder)}/token", {"a": "1"}, OutboundPolicy())
    assert recorder.state.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_host_on_a_non_public_address_is_refused_before_connecting(
    recorder: _RecordingServer, sender: Sender, host: str
) -> None:
    """An https URL passes the syntax check; its address does not. A loopback literal, and a name
    resolving to loopback, are refused as the connection would open (the event loop's sender judges
    addresses only there): UnsafeURL, not the TLS failure an attempted connection would give."""
    port = recorder.server_address[1]
    calls = [lambda: sender.fetch(f"https://{host}:{port}/jwks", OutboundPolicy()),
             lambda: sender.post_form(f"https://{host}:{port}/token", {"a": "1"}, OutboundPolicy())]
    for call in calls:
        with pytest.raises(UnsafeURL) as caught:
            call()
        assert "only contacts identity providers on public addresses" in caught.value.message
    assert recorder.state.requests == []


def test_exchange_code_reads_a_token_response_without_id_token(recorder: _RecordingServer) -> None:
    recorder.state.answers["/token"] = (200, {}, b'{"access_token": "at", "token_type": "Bearer"}')
    with pytest.raises(IdPLoginError) as caught:
        exchange_code(
            token_endpoint=f"{base_url(recorder)}/token",
            code="c",
            redirect_uri=REDIRECT_URI,
            code_verifier=new_code_verifier(),
            client_id="client:1",
            client_secret="s3cr&t +",
            auth_method="client_secret_basic",
            policy=INSECURE,
        )
    assert caught.value.reason == "bad_token_response"
    assert "id_token" in caught.value.message
    [request] = recorder.state.requests
    # RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic encoding.
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"client%3A1:s3cr%26t+%2B").decode()
    assert "client_secret" not in parse_qs(request.body.decode())


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"<html>", "bad_token_response"),
        (200, b'{"access_token": "at", "token_type": "mac", "id_token": "x"}', "bad_token_response"),
        (502, b"<html>bad gateway</html>", "bad_token_response"),
        (400, b'{"error": "invalid_request", "error_description": "missing code"}', "token_error"),
    ],
)
def test_exchange_code_classifies_answers(recorder: _RecordingServer, status: int, body: bytes, reason: str) -> None:
    recorder.state.answers["/token"] = (status, {}, body)
    with pytest.raises(IdPLoginError) as caught:
        exchange_code(
            token_endpoint=f"{base_url(recorder)}/token",
            code="c",
            redirect_uri=REDIRECT_URI,
            code_verifier=new_code_verifier(),
            client_id="client",
            client_secret="secret",
            auth_method="client_secret_post",
            policy=INSECURE,
        )
    assert caught.value.reason == reason
    assert caught.value.details["status"] == status
    [request] = recorder.state.requests
    assert "authorization" not in request.headers
    form = parse_qs(request.body.decode())
    assert (form["client_id"], form["client_secret"], form["code"]) == (["client"], ["secret"], ["c"])
    assert form["grant_type"] == ["authorization_code"]


def test_fetch_sends_headers_only_to_the_first_origin(recorder: _RecordingServer, sender: Sender) -> None:
    other = _RecordingServer()
    thread = threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        recorder.state.answers["/start"] = (302, {"Location": "/same"}, b"")
        recorder.state.answers["/same"] = (302, {"Location": f"{base_url(other)}/away"}, b"")
        other.state.answers["/away"] = (200, {}, b"{}")
        sender.fetch(f"{base_url(recorder)}/start", INSECURE, headers={"Authorization": "Bearer t0ken"})
    finally:
        other.shutdown()
        other.server_close()
        thread.join(timeout=5)
    assert [r.headers.get("authorization") for r in recorder.state.requests] == ["Bearer t0ken", "Bearer t0ken"]
    [away] = other.state.requests
    assert "authorization" not in away.headers
