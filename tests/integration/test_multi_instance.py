"""Two ``keyhall serve`` processes on one PostgreSQL database, behind a round-robin TCP proxy whose
URL is ``KEYHALL_PUBLIC_URL`` (the issuer of every token, the base of every callback).

Nothing a second instance needs may live in one process's memory: a sign-in started on one
instance finishes on the other, tokens issued by one are verified with and refreshed at the
other, and concurrent writers on both never lose an update.

Two races (replicas migrating an empty database at once, replicas creating their first signing
keys at once) are made certain rather than likely: the test holds a lock in PostgreSQL until every
instance queues up behind it, then releases them together.

Needs the PostgreSQL server on 127.0.0.1:5432 (fresh databases, dropped afterwards) and the npm
``oidc-provider`` peer.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from keyhall.security.secrets import new_key
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port
from tests.support.servers import (
    Cluster,
    KeyhallServer,
    ServerError,
    TcpProxy,
    Tenant,
    audit_events,
    authorize,
    bearer,
    database_url,
    holding,
    keyhall_cluster,
    keyhall_env,
    make_tenant,
    postgres_database,
    product_code,
    query,
    token_request,
)

# The same servers and databases whichever leg runs: `make test` runs it, `make test-postgres` not again.
pytestmark = pytest.mark.own_database

WRITERS = 50
WRITE_DEADLINE = 180.0  # seconds for all writers together; a writer still retrying then is a failure


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with postgres_database() as database, \
            keyhall_cluster(tmp_path_factory.mktemp("cluster"), database,
                            KEYHALL_API_RATE_LIMIT_PER_MINUTE="0") as running:
        yield running


def tenant_on(cluster: Cluster, idp: OidcIdp, via: KeyhallServer) -> Tenant:
    return make_tenant(via.url, cluster.instance_token, idp.issuer, idp.register_client, public_url=cluster.public_url)


def on(server_url: str, public_url: str, url: str) -> str:
    """``url`` (on the public URL) sent to one instance directly, as a sticky load balancer would."""
    assert url.startswith(f"{public_url}/"), url
    return server_url + url.removeprefix(public_url)


def jwks_of(base_url: str) -> KeySet:
    response = httpx.get(f"{base_url}/oauth2/jwks", trust_env=False, timeout=15)
    assert response.status_code == 200, response.text
    return KeySet.import_key_set(response.json())


def verified_claims(token: str, base_url: str, issuer: str, audience: str) -> dict[str, Any]:
    decoded = jwt.decode(token, jwks_of(base_url), algorithms=["RS256", "ES256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer},
                          aud={"essential": True, "value": audience}).validate(decoded.claims)
    return dict(decoded.claims)


def connection_events(server: KeyhallServer, tenant: Tenant, action: str) -> list[dict[str, Any]]:
    return audit_events(server.url, tenant.org_id, tenant.owner, action=action, target_id=tenant.connection["id"])


# --- 1. one sign-in across both instances ----------------------------------------------------


def test_sign_in_started_on_one_instance_finishes_on_the_other(cluster: Cluster, oidc_idp: OidcIdp) -> None:
    a, b = cluster.servers
    issuer = cluster.public_url
    tenant = tenant_on(cluster, oidc_idp, via=a)
    discovery = httpx.get(f"{b.url}/.well-known/openid-configuration", trust_env=False).json()
    assert discovery["issuer"] == issuer
    assert discovery["token_endpoint"] == f"{issuer}/oauth2/token"

    with httpx.Client(trust_env=False, timeout=15) as browser:
        # The product sends the browser to instance A; the IdP sends it back to the public URL,
        # which this time reaches instance B; the product redeems the code at B as well.
        started = authorize(browser, a.url, tenant, "alice")
        callback = oidc_idp.scripted_login(started.idp_url, "alice")
        assert callback.startswith(f"{issuer}/sso/{tenant.connection['id']}/oidc/callback?")
        code = product_code(browser.get(on(b.url, issuer, callback)), tenant, started, issuer)
    issued = token_request(b.url, tenant, {"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": tenant.redirect_uri, "code_verifier": started.verifier})
    assert issued.status_code == 200, issued.text
    tokens = issued.json()

    # The signing keys live in the database: either instance's JWKS verifies what B signed.
    assert jwks_of(a.url).as_dict() == jwks_of(b.url).as_dict()
    by_a = verified_claims(tokens["id_token"], a.url, issuer, tenant.client_id)
    by_b = verified_claims(tokens["id_token"], b.url, issuer, tenant.client_id)
    assert by_a == by_b
    assert by_a["nonce"] == started.nonce
    assert by_a["email"] == "alice@example.com"
    assert by_a["org_id"] == tenant.org_id
    assert by_a["connection_id"] == tenant.connection["id"]

    # B's access token is good at A's userinfo; B's refresh token is redeemed at A.
    info = httpx.get(f"{a.url}/oauth2/userinfo", headers=bearer(tokens["access_token"]), trust_env=False)
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == by_a["sub"]
    refreshed = token_request(a.url, tenant, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    again = verified_claims(refreshed.json()["id_token"], b.url, issuer, tenant.client_id)
    assert again["sub"] == by_a["sub"]

    # Rotation is shared too: the old refresh token, replayed at B, is refused and revokes A's new one.
    replay = token_request(b.url, tenant, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    newest = token_request(a.url, tenant, {"grant_type": "refresh_token",
                                           "refresh_token": refreshed.json()["refresh_token"]})
    assert newest.json()["error"] == "invalid_grant"

    # The code was used once, at B: replaying it at A fails.
    replayed = token_request(a.url, tenant, {"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": tenant.redirect_uri, "code_verifier": started.verifier})
    assert replayed.json()["error"] == "invalid_grant"

    # The connection's first sign-in (on B) is visible through A's API.
    with a.client() as api:
        conn = api.get(f"/v1/organizations/{tenant.org_id}/connections/{tenant.connection['id']}",
                       headers=bearer(tenant.owner)).json()
    assert conn["is_verified"] is True


def test_sign_ins_through_the_round_robin_proxy(cluster: Cluster, oidc_idp: OidcIdp) -> None:
    """Every request on a new TCP connection: the proxy alternates A and B at every step."""
    a, _b = cluster.servers
    issuer = cluster.public_url
    tenant = tenant_on(cluster, oidc_idp, via=a)
    before = dict(cluster.proxy.routed)
    subjects = set()
    for login in ("alice", "bob", "alice"):
        with httpx.Client(trust_env=False, timeout=15, headers={"Connection": "close"}) as browser:
            started = authorize(browser, issuer, tenant, login)
            callback = oidc_idp.scripted_login(started.idp_url, login)
            code = product_code(browser.get(callback), tenant, started, issuer)
        tokens = token_request(issuer, tenant, {"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": tenant.redirect_uri,
                                                "code_verifier": started.verifier})
        assert tokens.status_code == 200, tokens.text
        refreshed = token_request(issuer, tenant, {"grant_type": "refresh_token",
                                                   "refresh_token": tokens.json()["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        for token in (tokens.json()["id_token"], refreshed.json()["id_token"]):
            subjects.add(verified_claims(token, issuer, issuer, tenant.client_id)["sub"])
    assert len(subjects) == 2  # alice twice (one pairwise subject) and bob
    routed = {index: cluster.proxy.routed[index] - before.get(index, 0) for index in (0, 1)}
    assert min(routed.values()) >= 5, routed  # both instances took part


@dataclass
class Rollout:
    """Three instances started at once on an empty database, behind one round-robin proxy."""

    database: str
    servers: list[KeyhallServer]
    queued: int  # how many of their migrations were seen waiting behind the held lock
    failures: list[str]  # why each instance that did not come up died


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollout]:
    """A rollout starts its replicas at once, and each migrates the schema on start. To make the
    race certain rather than likely, an uncommitted ``CREATE TABLE alembic_version`` is held until
    all three migrations queue up behind it, then they are let go together (three migrations
    reaching that statement within the same moment, as they do by chance). Nothing here asks for
    a signing key: the instances are fresh for ``test_first_jwks_answers_agree_across_instances``."""
    workdir = tmp_path_factory.mktemp("rollout")
    with postgres_database() as database, TcpProxy() as proxy:
        secret_keys = new_key()
        servers = [KeyhallServer(name, free_port(), keyhall_env(workdir / name / "data", database_url(database),
                                                                 proxy.url, secret_keys), workdir / name)
                   for name in ("a", "b", "c")]
        try:
            with holding(database, "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)") as waiters:
                for server in servers:
                    server.start(wait=False)
                waiting = waiters(len(servers), 30.0)
            failures = []
            for server in servers:
                try:
                    server.wait_healthy()
                except ServerError as exc:
                    failures.append(" | ".join(line.strip() for line in str(exc).splitlines()
                                               if "Error" in line or "exited" in line)[:400])
            proxy.set_backends([("127.0.0.1", s.port) for s in servers if s.alive()])
            yield Rollout(database=database, servers=servers, queued=waiting, failures=failures)
        finally:
            for server in servers:
                server.stop()


def test_instances_started_together_on_an_empty_database(rollout: Rollout) -> None:
    """All three replicas of a rollout that migrate an empty database at once come up (see ``rollout``)."""
    servers = rollout.servers
    assert not rollout.failures, (f"{len(rollout.failures)} of {len(servers)} instances ({rollout.queued} queued) "
                                  f"died: {rollout.failures}")
    for server in servers:
        assert httpx.get(f"{server.url}/readyz", trust_env=False, timeout=10).status_code == 200


def test_first_jwks_answers_agree_across_instances(rollout: Rollout) -> None:
    """Signing keys are made on first use. When the first JWKS requests reach every instance at
    once, each must publish the keys that will sign: a product caches the JWKS it fetched
    (``max-age=300``) and cannot verify a token signed with a key it was not shown. The test
    holds a lock on ``signing_keys`` until the three requests queue up, then lets them go."""
    assert not rollout.failures, rollout.failures
    database = rollout.database
    assert query(database, "SELECT count(*) FROM signing_keys") == [(0,)], "a signing key was made before the race"
    answers: dict[str, list[str]] = {}

    def fetch(server: KeyhallServer) -> None:
        jwks = httpx.get(f"{server.url}/oauth2/jwks", trust_env=False, timeout=30).json()
        answers[server.name] = sorted(k["kid"] for k in jwks["keys"])

    threads = [threading.Thread(target=fetch, args=(s,)) for s in rollout.servers]
    with holding(database, "LOCK TABLE signing_keys IN SHARE MODE") as waiters:
        for thread in threads:
            thread.start()
        waiters(len(threads), 10.0)
    for thread in threads:
        thread.join(timeout=30)
    active = query(database, "SELECT alg, kid FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC")
    per_alg = Counter(alg for alg, _kid in active)
    signers = {alg: next(kid for a, kid in active if a == alg) for alg in per_alg}
    missing = {name: sorted(set(signers.values()) - set(kids)) for name, kids in answers.items()}
    assert len(answers) == len(threads)
    assert not any(missing.values()), (
        f"the keys that sign ({signers}) are missing from the first JWKS answer of {missing}")
    # One active key per algorithm: a duplicate is published for ever, and `keyhall signing-keys
    # rotate` retires only the newest one.
    assert set(per_alg.values()) == {1}, f"active signing keys per algorithm: {dict(per_alg)}"


# --- 2. no lost updates -------------------------------------------------------------------------


@dataclass
class Accepted:
    writer: int
    request_id: str
    version: int
    display_name: str
    contacts: list[str]


def test_concurrent_if_match_writers_lose_no_update(cluster: Cluster, oidc_idp: OidcIdp) -> None:
    """50 writers on both instances: read, PATCH with If-Match, re-read and retry on 412."""
    a, b = cluster.servers
    tenant = tenant_on(cluster, oidc_idp, via=a)
    path = f"/v1/organizations/{tenant.org_id}/connections/{tenant.connection['id']}"
    start_version = int(tenant.connection["version"])
    start_name = tenant.connection["display_name"]
    accepted: list[Accepted] = []
    problems: list[str] = []
    stale = [0]
    lock = threading.Lock()
    gate = threading.Barrier(WRITERS)
    deadline = time.monotonic() + WRITE_DEADLINE

    def writer(index: int) -> None:
        server = (a, b)[index % 2]
        name, contacts = f"Writer {index:02d}", [f"writer{index:02d}@example.com"]
        with server.client(headers=bearer(tenant.owner)) as api:
            gate.wait(timeout=30)
            attempt = 0
            while time.monotonic() < deadline:
                attempt += 1
                current = api.get(path)
                if current.status_code != 200:
                    with lock:
                        problems.append(f"writer {index}: GET {current.status_code} {current.text[:200]}")
                    return
                assert current.headers["etag"] == f'"{current.json()["version"]}"'
                request_id = f"writer-{index:02d}-{attempt}-{uuid.uuid4().hex[:8]}"
                response = api.patch(path, json={"display_name": name, "contacts": contacts},
                                     headers={"If-Match": current.headers["etag"], "X-Request-ID": request_id})
                if response.status_code == 412:
                    with lock:
                        stale[0] += 1
                    continue
                with lock:
                    if response.status_code == 200:
                        body = response.json()
                        accepted.append(Accepted(index, request_id, int(body["version"]), body["display_name"],
                                                 body["contacts"]))
                        assert response.headers["etag"] == f'"{body["version"]}"'
                    else:
                        problems.append(f"writer {index}: PATCH {response.status_code} {response.text[:200]}")
                return
            with lock:
                problems.append(f"writer {index}: still not accepted after {attempt} attempts")

    threads = [threading.Thread(target=writer, args=(i,), name=f"writer-{i}") for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WRITE_DEADLINE + 30)
    assert not problems, problems
    assert len(accepted) == WRITERS
    assert stale[0] > 0  # the writers did race

    # Each accepted write got its own version: none was applied on top of a stale read.
    accepted.sort(key=lambda w: w.version)
    assert [w.version for w in accepted] == list(range(start_version + 1, start_version + WRITERS + 1))
    for write in accepted:
        assert write.display_name == f"Writer {write.writer:02d}"
        assert write.contacts == [f"writer{write.writer:02d}@example.com"]

    # The final state, on either instance, is the last accepted write.
    for server in (a, b):
        with server.client(headers=bearer(tenant.owner)) as api:
            final = api.get(path)
        assert final.status_code == 200
        assert final.json()["version"] == start_version + WRITERS
        assert final.headers["etag"] == f'"{start_version + WRITERS}"'
        assert final.json()["display_name"] == accepted[-1].display_name
        assert final.json()["contacts"] == accepted[-1].contacts

    # Every accepted write has its audit event, and each one changed what the previous one wrote.
    events = connection_events(a, tenant, "connection.updated")
    by_request = {e["request_id"]: e for e in events}
    assert len(events) == WRITERS + 1  # the set-up's PATCH, then one per accepted write; none for a 412
    previous_name = start_name
    for write in accepted:
        event = by_request.get(write.request_id)
        assert event is not None, f"no audit event for the accepted write {write.request_id}"
        assert event["changes"]["display_name"] == {"from": previous_name, "to": write.display_name}
        previous_name = write.display_name


# Distinct parts of a connection that a PATCH can change without touching the others.
FIELD_PATCHES: tuple[tuple[str, Any, Any], ...] = (
    ("display_name", "Left", "Right"),
    ("contacts", ["left@example.com"], ["right@example.com", "second@example.com"]),
    ("branding", {"display_name": "Left brand", "logo": "https://left.example/logo.png", "dark_logo": None},
     {"display_name": "Right brand", "logo": None, "dark_logo": "https://right.example/dark.png"}),
    ("sync_profile", False, True),
    ("user_provisioning", "manual", "disabled"),
    ("group_provisioning", "none", "sync"),
    ("text_record", "kh-left", "kh-right"),
    ("group_mappings", [{"idp_group": "l", "group": "left"}], [{"idp_group": "r", "group": "right"}]),
    *((f"attribute_mappings.{name}", f"left_{name}", f"right_{name}") for name in (
        "subject", "email", "email_verified", "name", "given_name", "family_name", "username", "picture",
        "locale", "phone_number", "groups")),
    ("oidc.scope", "openid email", "openid profile"),
    ("oidc.config_name", "left-config", "right-config"),
    ("oidc.fetch_userinfo", False, True),
    ("oidc.token_endpoint_auth_method", "client_secret_post", "client_secret_basic"),
    ("oidc.userinfo_url", "http://127.0.0.1:9/left-userinfo", "http://127.0.0.1:9/right-userinfo"),
    ("name", "left-name", "right-name"),
)


def patch_body(field: str, value: Any) -> dict[str, Any]:
    head, _, key = field.partition(".")
    return {head: {key: value}} if key else {head: value}


def read_field(connection: dict[str, Any], field: str) -> Any:
    head, _, key = field.partition(".")
    return connection[head][key] if key else connection[head]


def test_concurrent_writers_without_if_match_all_land(cluster: Cluster, oidc_idp: OidcIdp) -> None:
    """50 PATCHes without If-Match, at once on both instances, each changing one part of one
    connection (25 parts, two writers each). The server re-reads and re-applies on a concurrent
    write: every PATCH succeeds, and every answer shows all the writes ordered before it."""
    assert len(FIELD_PATCHES) * 2 == WRITERS
    a, b = cluster.servers
    tenant = tenant_on(cluster, oidc_idp, via=a)
    path = f"/v1/organizations/{tenant.org_id}/connections/{tenant.connection['id']}"
    start = tenant.connection
    writes = [(field, value) for field, left, right in FIELD_PATCHES for value in (left, right)]
    answers: dict[int, httpx.Response] = {}
    gate = threading.Barrier(WRITERS)

    def writer(index: int) -> None:
        field, value = writes[index]
        with (a, b)[index % 2].client(headers=bearer(tenant.owner)) as api:
            gate.wait(timeout=30)
            answers[index] = api.patch(path, json=patch_body(field, value),
                                       headers={"X-Request-ID": f"free-{index:02d}-{uuid.uuid4().hex[:8]}"})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WRITE_DEADLINE)
    assert len(answers) == WRITERS
    refused = {i: f"{r.status_code} {r.text[:160]}" for i, r in answers.items() if r.status_code != 200}
    assert all(r.status_code in (200, 409) for r in answers.values()), refused

    # What was accepted was applied in one order, each on top of everything accepted before it.
    bodies = {i: r.json() for i, r in answers.items() if r.status_code == 200}
    order = sorted(bodies, key=lambda i: bodies[i]["version"])
    assert [bodies[i]["version"] for i in order] == list(range(start["version"] + 1,
                                                                start["version"] + len(bodies) + 1))
    latest: dict[str, Any] = {field: read_field(start, field) for field, _l, _r in FIELD_PATCHES}
    for index in order:
        field, value = writes[index]
        latest[field] = value
        for name, expected in latest.items():
            assert read_field(bodies[index], name) == expected, (index, name)
    with a.client(headers=bearer(tenant.owner)) as api:
        final = api.get(path).json()
    assert final["version"] == start["version"] + len(bodies)
    for name, expected in latest.items():
        assert read_field(final, name) == expected, name
    events = {e["request_id"] for e in connection_events(a, tenant, "connection.updated")
              if e["request_id"].startswith("free-")}
    assert events == {answers[i].headers["x-request-id"] for i in bodies}  # a refused PATCH left nothing

    # ... and nothing was refused: the server re-reads and re-applies a PATCH without If-Match.
    assert not refused, (f"{len(refused)} of {WRITERS} PATCHes without If-Match were refused "
                         f"(first: {next(iter(refused.values()))})")
