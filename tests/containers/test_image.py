"""The production image (``Dockerfile``), run as a container against the machine's PostgreSQL
(a database of its own) and the real OpenID provider (npm ``oidc-provider``).

- A product's sign-in goes through the container end to end: authorize, the IdP's login, the
  callback, the code redeemed for tokens whose claims come from the IdP.
- The server runs as the image's unprivileged user, never root.
- The image's HEALTHCHECK follows ``/readyz``: healthy while the database answers, unhealthy when
  the database is cut (a TCP proxy between the container and PostgreSQL), healthy again after.

Built by ``make test-containers`` (``KEYHALL_TEST_IMAGE`` names another image); not collected by
``make test``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from keyhall.security.secrets import new_key
from tests.containers.podman import Container, podman, require_image, wait_ready
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port
from tests.support.servers import (
    TcpProxy,
    authorize,
    database_url,
    make_tenant,
    postgres_database,
    product_code,
    token_request,
)

START_TIMEOUT = 90.0  # seconds from `podman run` to /readyz 200 (migrating an empty database included)


@pytest.fixture(scope="module")
def database_cable() -> Iterator[TcpProxy]:
    """The container's only way to PostgreSQL: a proxy the health check test can cut."""
    with TcpProxy([("127.0.0.1", 5432)]) as proxy:
        yield proxy


@dataclass(frozen=True)
class Served:
    container: Container
    url: str


@pytest.fixture(scope="module")
def served(database_cable: TcpProxy) -> Iterator[Served]:
    image = require_image()
    port = free_port()
    with postgres_database("keyhall_image") as name:
        env = {
            "KEYHALL_HOST": "127.0.0.1",  # host networking: only this machine's loopback
            "KEYHALL_PORT": str(port),
            "KEYHALL_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "KEYHALL_DATABASE_URL": database_url(name, port=database_cable.port),
            "KEYHALL_SECRET_KEYS": new_key(),
            "KEYHALL_ALLOW_INSECURE_IDP_URLS": "1",  # the test IdP is http on loopback
            "KEYHALL_ALLOW_UNVERIFIED_DOMAINS": "1",
            "KEYHALL_DOMAIN_CHECK_INTERVAL_SECONDS": "0",
            "KEYHALL_DATABASE_TIMEOUT_SECONDS": "2",
        }
        with Container(image, env) as running:
            try:
                seconds = wait_ready(f"http://127.0.0.1:{port}/readyz", START_TIMEOUT)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{running.logs()}") from None
            print(f"\ncontainer cold start to /readyz 200: {seconds:.1f} s")
            yield Served(running, f"http://127.0.0.1:{port}")


def test_sign_in_through_the_container(served: Served, oidc_idp: OidcIdp) -> None:
    url = served.url
    token = json.loads(served.container.exec("keyhall", "key", "create", "--instance").stdout)["token"]
    tenant = make_tenant(url, token, oidc_idp.issuer, oidc_idp.register_client, public_url=url)
    with httpx.Client(trust_env=False, timeout=15) as browser:
        started = authorize(browser, url, tenant, "alice")
        assert started.idp_url.startswith(f"{oidc_idp.base_url}/")
        callback = oidc_idp.scripted_login(started.idp_url, "alice")
        assert callback.startswith(f"{url}/sso/{tenant.connection['id']}/oidc/callback?")
        code = product_code(browser.get(callback), tenant, started, url)
    issued = token_request(url, tenant, {"grant_type": "authorization_code", "code": code,
                                         "redirect_uri": tenant.redirect_uri, "code_verifier": started.verifier})
    assert issued.status_code == 200, issued.text
    keys = KeySet.import_key_set(httpx.get(f"{url}/oauth2/jwks", trust_env=False).json())
    claims = jwt.decode(issued.json()["id_token"], keys, algorithms=["RS256", "ES256"]).claims
    assert claims["iss"] == url
    assert claims["aud"] == tenant.client_id
    assert claims["email"] == "alice@example.com"
    assert claims["nonce"] == started.nonce
    # Redeemed once: the same code again is refused.
    again = token_request(url, tenant, {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": tenant.redirect_uri, "code_verifier": started.verifier})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_the_server_runs_as_an_unprivileged_user(served: Served) -> None:
    container = served.container
    assert podman("image", "inspect", "--format", "{{.Config.User}}", container.image).stdout.strip() == "10001:10001"
    # PID 1 is `keyhall serve` itself, owned by that user; so is what it wrote in the data volume.
    assert container.exec("cat", "/proc/1/cmdline").stdout.split("\0")[1:3] == ["/opt/keyhall/bin/keyhall", "serve"]
    assert container.exec("stat", "-c", "%u:%g", "/proc/1").stdout.strip() == "10001:10001"
    assert container.exec("id", "-u").stdout.strip() == "10001"
    # Root's files stay out of reach: the image's user cannot write outside /data.
    assert container.exec("touch", "/opt/keyhall/probe", check=False).returncode != 0
    assert container.exec("touch", "/data/probe", check=False).returncode == 0


def health(container: Container) -> tuple[int, str]:
    """One run of the image's HEALTHCHECK (``podman healthcheck run``): its exit code and verdict.

    (Podman also turns the container's status to unhealthy after three failures in a row, but
    only once the image's 60-second start period is over: this test does not wait for that.)"""
    done = podman("healthcheck", "run", container.name, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, done.stdout.strip() or "healthy"  # podman says nothing when it passes


def test_readyz_drives_the_health_check(served: Served, database_cable: TcpProxy) -> None:
    container = served.container
    assert health(container) == (0, "healthy")
    database_cable.cut("reject")
    try:
        answer = httpx.get(f"{served.url}/readyz", trust_env=False, timeout=10)
        assert answer.status_code == 503
        assert answer.json() == {"status": "unavailable", "database": "unreachable"}
        assert health(container) == (1, "unhealthy")
        # The server itself stays up: only readiness failed, /healthz still answers.
        assert httpx.get(f"{served.url}/healthz", trust_env=False, timeout=10).status_code == 200
    finally:
        database_cable.restore()
    assert wait_ready(f"{served.url}/readyz", 30) >= 0
    assert health(container) == (0, "healthy")
