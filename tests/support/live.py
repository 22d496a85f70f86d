"""A real Keyhall server (uvicorn) in a background thread on 127.0.0.1, on a real database,
for end-to-end sign-ins that a browser, an IdP and a product client all reach over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn

from keyhall.app import create_app
from keyhall.core.vocabulary import Role
from keyhall.runtime import Runtime
from tests.support.api import auth, issue_key
from tests.support.database import fresh_database
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port
from tests.support.settings import make_settings

if TYPE_CHECKING:  # imported by pytest as a plugin (tests/conftest.py), so not here at import time
    from tests.support.dns_server import DnsServer


@dataclass
class LiveKeyhall:
    url: str
    runtime: Runtime
    instance_token: str
    dns: DnsServer | None = None  # the resolver Keyhall asks for domain proofs (KEYHALL_DNS_RESOLVER)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=15.0, trust_env=False)

    def issue_key(self, org_id: str, role: Role) -> str:
        return issue_key(self.runtime, org_id, role)

    def verify_domain(self, org_id: str, owner: str, domain: str) -> dict[str, Any]:
        """Prove ``domain`` for the organization for real: claim it (unless a connection already
        did), publish its TXT proof on the test DNS server, and ask Keyhall to check it."""
        assert self.dns is not None, "this Keyhall asks no test DNS server"
        with self.api() as api:
            listed = api.get(f"/v1/organizations/{org_id}/domains", params={"limit": 200}, headers=auth(owner))
            assert listed.status_code == 200, listed.text
            found = [d for d in listed.json()["data"] if d["domain"] == domain]
            if found:
                claim = found[0]
            else:
                made = api.post(f"/v1/organizations/{org_id}/domains", json={"domain": domain}, headers=auth(owner))
                assert made.status_code == 201, made.text
                claim = made.json()
            self.dns.publish_txt(claim["verification"]["name"], claim["verification"]["value"])
            checked = api.post(f"/v1/organizations/{org_id}/domains/{claim['id']}/verify", headers=auth(owner))
        assert checked.status_code == 200, checked.text
        verified: dict[str, Any] = checked.json()
        assert verified["status"] == "verified", verified
        return verified


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread: leave signals to pytest
        pass


@contextmanager
def serving_keyhall(data_dir: Path, database_dir: Path, **overrides: Any) -> Iterator[LiveKeyhall]:
    """A Keyhall server in a thread on its own database, with settings ``overrides``, asking its own
    test DNS server for domain proofs (``LiveKeyhall.verify_domain``)."""
    from tests.support.dns_server import DnsServer

    port = free_port()
    dns = DnsServer().start()
    with _stopping(dns), fresh_database(database_dir) as url:
        settings = make_settings(data_dir, url, public_url=f"http://127.0.0.1:{port}",
                                 **{"dns_resolver": dns.address, **overrides})
        runtime = Runtime.build(settings)
        runtime.database.migrate()
        config = uvicorn.Config(create_app(settings, runtime), host="127.0.0.1", port=port, log_level="warning",
                                lifespan="on", access_log=False, proxy_headers=False)  # as `keyhall serve`
        server = _Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the Keyhall test server did not start")
            time.sleep(0.05)
        token = issue_key(runtime, None, None)
        try:
            yield LiveKeyhall(url=f"http://127.0.0.1:{port}", runtime=runtime, instance_token=token, dns=dns)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            runtime.database.dispose()


@contextmanager
def _stopping(dns: DnsServer) -> Iterator[None]:
    try:
        yield
    finally:
        dns.stop()


@pytest.fixture(scope="session")
def live_keyhall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKeyhall]:
    with serving_keyhall(Path(tmp_path_factory.mktemp("live-data")), tmp_path_factory.mktemp("live-db"),
                         allow_unverified_domains=True) as live:
        yield live


@dataclass
class TenantSetup:
    """An organization with one connection and a product registered with Keyhall, on the live server."""

    live: LiveKeyhall
    org: dict[str, Any]
    owner: str
    connection: dict[str, Any]
    domain: str
    client_id: str
    client_secret: str
    product_redirect: str

    @property
    def cid(self) -> str:
        return str(self.connection["id"])

    @property
    def connection_path(self) -> str:
        return f"/v1/organizations/{self.org['id']}/connections/{self.cid}"

    def get_connection(self) -> dict[str, Any]:
        with self.live.api() as api:
            response = api.get(self.connection_path, headers=auth(self.owner))
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def audit(self, action: str) -> list[dict[str, Any]]:
        """The organization's audit events of one action, oldest first."""
        with self.live.api() as api:
            response = api.get(f"/v1/organizations/{self.org['id']}/audit-events", params={"action": action},
                               headers=auth(self.owner))
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["data"]
        return events


@dataclass
class SignInSetup:
    """An organization with an OIDC connection to the real IdP, and a product registered with Keyhall."""

    live: LiveKeyhall
    idp: OidcIdp
    org: dict[str, Any]
    owner: str
    connection: dict[str, Any]
    domain: str
    client_id: str
    client_secret: str | None
    product_redirect: str


def make_signin_setup(live: LiveKeyhall, idp: OidcIdp, name: str, *, public_client: bool = False,
                      connection_extra: dict[str, Any] | None = None) -> SignInSetup:
    import uuid

    suffix = uuid.uuid4().hex[:8]
    domain = f"{name}-{suffix}.test".lower()
    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": f"{name} {suffix}"}, headers=auth(live.instance_token))
        assert org.status_code == 201, org.text
        org_data = org.json()
        owner = live.issue_key(org_data["id"], Role.OWNER)
        body = {"protocol": "oidc", "name": "corp", "domains": [domain],
                "oidc": {"issuer": idp.issuer, "client_id": "pending", "scope": "openid profile email groups"},
                **(connection_extra or {})}
        created = api.post(f"/v1/organizations/{org_data['id']}/connections", json=body, headers=auth(owner))
        assert created.status_code == 201, created.text
        conn = created.json()
        client_id, secret = idp.register_client([conn["redirect_uri"]])
        patched = api.patch(f"/v1/organizations/{org_data['id']}/connections/{conn['id']}",
                            json={"oidc": {"client_id": client_id, "client_secret": secret}}, headers=auth(owner))
        assert patched.status_code == 200, patched.text
        product_redirect = f"http://127.0.0.1:{free_port()}/product/callback"
        app = api.post("/v1/applications", json={"name": f"Product {suffix}", "redirect_uris": [product_redirect],
                                                 "public": public_client}, headers=auth(live.instance_token))
        assert app.status_code == 201, app.text
    return SignInSetup(live=live, idp=idp, org=org_data, owner=owner, connection=patched.json(), domain=domain,
                       client_id=app.json()["client_id"], client_secret=app.json()["client_secret"],
                       product_redirect=product_redirect)
