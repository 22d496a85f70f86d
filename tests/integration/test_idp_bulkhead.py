"""One organization's IdP hangs while a hundred of its people come back to Keyhall's callback.

Each callback trades its code at the IdP's token endpoint, which here (``HostileIdp`` in
``Mode.TOKEN_HANGS``) reads the request and never answers. Without a bulkhead every callback holds
a worker thread for the IdP timeout, the thread pool runs dry, and every other tenant waits.
With it (``KEYHALL_IDP_MAX_CONCURRENT_CALLS``, per instance and IdP origin) at most that many
wait; the others get the "could not reach your identity provider" page at once, with the typed
reason ``idp_busy`` in the audit trail and in a JSON log line carrying their request id, while
``/healthz`` and another organization's complete sign-in (a real ``oidc-provider``) stay fast.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.test_faults import Installation, Timed, install, run_threads, timed
from tests.integration.test_stalls import Liveness
from tests.support.hostile_idp import HostileIdp, Mode
from tests.support.oidc_idp import OidcIdp
from tests.support.servers import (
    TcpProxy,
    Tenant,
    audit_events,
    authorize,
    keyhall_cluster,
    make_tenant,
    postgres_database,
    product_code,
    token_request,
    wait_until,
)

# The same servers and databases whichever leg runs: `make test` runs it, `make test-postgres` not again.
pytestmark = pytest.mark.own_database

IDP_TIMEOUT = 5.0  # KEYHALL_IDP_TIMEOUT_SECONDS: how long each held callback waits
CAP = 10  # KEYHALL_IDP_MAX_CONCURRENT_CALLS
SIGN_INS = 100
#: Another tenant's whole sign-in must not wait for the hung IdP: it ends before one IdP timeout.
OTHER_TENANT_BOUND = IDP_TIMEOUT
BUSY_PAGE = "could not reach your organization&#39;s identity provider"


def hostile_tenant(base_url: str, instance_token: str, idp: HostileIdp, public_url: str) -> Tenant:
    def register(redirect_uris: list[str]) -> tuple[str, str]:
        for uri in redirect_uris:
            idp.allow_redirect_uri(uri)
        return idp.client_id, idp.client_secret

    return make_tenant(base_url, instance_token, idp.issuer, register, public_url=public_url)


@dataclass
class Callback:
    browser: httpx.Client
    url: str
    request_id: str
    answer: Timed | None = None


def callbacks_to(base_url: str, tenant: Tenant, idp: HostileIdp, count: int, tag: str) -> list[Callback]:
    """``count`` sign-ins started and signed in at the IdP, each stopped before Keyhall's callback
    (prepared a few at a time: the IdP still answers, so this is set-up, not the test)."""
    def prepare(n: int) -> Callback:
        browser = httpx.Client(trust_env=False, timeout=30, headers={"Connection": "close"})
        started = authorize(browser, base_url, tenant, f"person{n}")
        at_idp = browser.get(started.idp_url)
        assert at_idp.status_code == 302, at_idp.text
        return Callback(browser, at_idp.headers["location"], f"{tag}-{n}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(prepare, range(count)))


def fire(callbacks: list[Callback]) -> threading.Thread:
    """Every callback at once, each from its own thread; the returned thread ends when all are answered."""
    def one(index: int) -> None:
        callback = callbacks[index]
        headers = {"X-Request-ID": callback.request_id}
        callback.answer = timed(lambda: callback.browser.get(callback.url, headers=headers))

    runner = threading.Thread(target=run_threads, args=(len(callbacks), one, 3 * IDP_TIMEOUT + 30), daemon=True)
    runner.start()
    return runner


def complete_sign_in(base_url: str, tenant: Tenant, idp: OidcIdp, login: str) -> float:
    """A whole sign-in (authorize, IdP, callback, code redemption); its seconds, Keyhall's steps only."""
    with httpx.Client(trust_env=False, timeout=30, headers={"Connection": "close"}) as browser:
        started_at = time.monotonic()
        started = authorize(browser, base_url, tenant, login)
        keyhall_seconds = time.monotonic() - started_at
        callback = idp.scripted_login(started.idp_url, login)
        started_at = time.monotonic()
        code = product_code(browser.get(callback), tenant, started, base_url)
        tokens = token_request(base_url, tenant, {"grant_type": "authorization_code", "code": code,
                                                  "redirect_uri": tenant.redirect_uri,
                                                  "code_verifier": started.verifier})
        assert tokens.status_code == 200, tokens.text
        return keyhall_seconds + time.monotonic() - started_at


def check_answers(callbacks: list[Callback], reasons: dict[str, str], held_at_most: int) -> None:
    """Every callback answered with the person-facing page; those the bulkhead refused (``idp_busy``
    in the audit trail) did not wait for the IdP, the others (``idp_unreachable``) ended at its timeout."""
    refused, held = [], []
    for callback in callbacks:
        answer = callback.answer
        assert answer is not None, callback
        assert answer.status is not None, answer
        assert BUSY_PAGE in answer.body, answer.body[-600:]
        assert "Traceback" not in answer.body
        reason = reasons.get(callback.request_id)
        assert reason in ("idp_busy", "idp_unreachable"), (callback.request_id, reason)
        assert answer.status == (503 if reason == "idp_busy" else 502), (reason, answer.status)
        (refused if reason == "idp_busy" else held).append(answer)
    assert len(held) <= held_at_most, f"{len(held)} callbacks waited on the hung IdP (cap {held_at_most})"
    assert len(refused) >= len(callbacks) - held_at_most
    slow = [a for a in refused if a.seconds >= IDP_TIMEOUT]
    assert not slow, f"{len(slow)} refused callbacks waited as long as the IdP timeout: {slow[:3]}"
    print(f"refused: {len(refused)}, slowest {max(a.seconds for a in refused):.2f} s; held: {len(held)}")
    assert all(a.seconds <= 3 * IDP_TIMEOUT + 2 for a in held), held


def logged_failures(log: str) -> dict[str, dict[str, object]]:
    """The server's ``login.failed`` JSON log lines, by request id."""
    lines: dict[str, dict[str, object]] = {}
    for raw in log.splitlines():
        if '"login.failed"' not in raw:
            continue
        line = json.loads(raw)
        lines[str(line["request_id"])] = line
    return lines


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with postgres_database("keyhall_bulkhead") as database, TcpProxy([("127.0.0.1", 5432)]) as db_proxy:
        running = install(tmp_path_factory.mktemp("bulkhead"), database, db_proxy,
                          KEYHALL_IDP_MAX_CONCURRENT_CALLS=str(CAP), KEYHALL_LOGIN_RATE_LIMIT_PER_MINUTE="0",
                          KEYHALL_IDP_TIMEOUT_SECONDS=str(IDP_TIMEOUT))
        try:
            yield running
        finally:
            running.server.stop()


def test_a_hung_idp_holds_at_most_its_share_and_starves_nobody(installation: Installation, oidc_idp: OidcIdp) -> None:
    base, token = installation.server.url, installation.instance_token
    with HostileIdp() as hung_idp:
        hung = hostile_tenant(base, token, hung_idp, base)
        healthy = make_tenant(base, token, oidc_idp.issuer, oidc_idp.register_client, public_url=base)
        complete_sign_in(base, healthy, oidc_idp, "alice")  # warm: keys fetched, the person provisioned
        callbacks = callbacks_to(base, hung, hung_idp, SIGN_INS, "hang")
        hung_idp.mode = Mode.TOKEN_HANGS
        with Liveness(base) as liveness:
            runner = fire(callbacks)
            assert wait_until(lambda: hung_idp.hanging >= CAP, timeout=10), hung_idp.hanging
            others = [complete_sign_in(base, healthy, oidc_idp, login) for login in ("alice", "bob", "alice")]
            assert hung_idp.hanging >= 1, "the hung sign-ins ended before the other tenant's were measured"
            runner.join(timeout=3 * IDP_TIMEOUT + 40)
            assert not runner.is_alive()
        for callback in callbacks:
            callback.browser.close()
        leaked = hung_idp.issued
        assert hung_idp.hung <= CAP
    print(liveness.check(), "; other tenant's sign-ins:", [f"{s * 1000:.0f} ms" for s in others])
    assert all(seconds < OTHER_TENANT_BOUND for seconds in others), others

    reasons = {e["request_id"]: e["changes"]["reason"]
               for e in audit_events(base, hung.org_id, hung.owner, action="login.failed")}
    check_answers(callbacks, reasons, CAP)

    log = installation.server.log()
    lines = logged_failures(log)
    for callback in callbacks:
        line = lines.get(callback.request_id)
        assert line is not None, f"no log line for the failed callback {callback.request_id}"
        assert line["reason"] == reasons[callback.request_id]
        assert line["connection_id"] == hung.connection["id"]
    assert not [secret for secret in leaked if secret in log], "a code or token reached the server log"
    assert hung_idp.client_secret not in log


def test_two_instances_behind_a_proxy_each_cap_their_own_calls(tmp_path: Path, oidc_idp: OidcIdp) -> None:
    with postgres_database("keyhall_bulkhead_mi") as database, \
            keyhall_cluster(tmp_path, database, KEYHALL_API_RATE_LIMIT_PER_MINUTE="0",
                            KEYHALL_LOGIN_RATE_LIMIT_PER_MINUTE="0", KEYHALL_IDP_TIMEOUT_SECONDS=str(IDP_TIMEOUT),
                            KEYHALL_IDP_MAX_CONCURRENT_CALLS=str(CAP)) as cluster, HostileIdp() as hung_idp:
        public, token = cluster.public_url, cluster.instance_token
        hung = hostile_tenant(public, token, hung_idp, public)
        healthy = make_tenant(public, token, oidc_idp.issuer, oidc_idp.register_client, public_url=public)
        for login in ("alice", "bob"):  # warm
            complete_sign_in(public, healthy, oidc_idp, login)
        callbacks = callbacks_to(public, hung, hung_idp, 60, "hang-mi")
        hung_idp.mode = Mode.TOKEN_HANGS
        with Liveness(cluster.servers[0].url) as first, Liveness(cluster.servers[1].url) as second:
            runner = fire(callbacks)
            assert wait_until(lambda: hung_idp.hanging >= 2 * CAP, timeout=10), hung_idp.hanging
            others = [complete_sign_in(public, healthy, oidc_idp, login) for login in ("alice", "bob")]
            runner.join(timeout=3 * IDP_TIMEOUT + 40)
            assert not runner.is_alive()
        for callback in callbacks:
            callback.browser.close()
        assert hung_idp.hung <= 2 * CAP
        logs = "\n".join(server.log() for server in cluster.servers)
        reasons = {e["request_id"]: e["changes"]["reason"]
                   for e in audit_events(public, hung.org_id, hung.owner, action="login.failed")}
    print(first.check(), second.check(), "; other tenant:", [f"{s * 1000:.0f} ms" for s in others])
    assert all(seconds < OTHER_TENANT_BOUND for seconds in others), others
    check_answers(callbacks, reasons, 2 * CAP)
    assert set(logged_failures(logs)) >= {c.request_id for c in callbacks}
