"""Email-domain ownership proved by a DNS TXT record, against a real DNS server (dnslib, in
process, on 127.0.0.1) and a real database, through the native API, the Raidiam dialect, home-realm
discovery and the periodic job."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.core.policy import connections_for_domain
from keyhall.jobs import DomainChecker, check_domains
from keyhall.runtime import Runtime
from tests.support.api import Keyhall, Tenant, auth
from tests.support.database import fresh_database
from tests.support.oidc_idp import OidcIdp
from tests.support.settings import make_settings

if TYPE_CHECKING:  # imported by pytest as a plugin (tests/conftest.py), so not here at run time
    from tests.support.dns_server import DnsServer

SAML_METADATA = Path(__file__).parent.parent / "fixtures" / "saml" / "metadata-valid.xml"
DNS_TIMEOUT = 1.0  # seconds: KEYHALL_IDP_TIMEOUT_SECONDS for these apps, so "server down" is quick


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class App:
    keyhall: Keyhall
    dns: DnsServer
    clock: Clock

    @property
    def client(self) -> TestClient:
        return self.keyhall.client

    @property
    def runtime(self) -> Runtime:
        return self.keyhall.runtime

    def tenant(self, name: str) -> Tenant:
        return self.keyhall.tenant(name)

    def claim(self, tenant: Tenant, name: str) -> dict[str, Any]:
        response = self.client.post(domains_url(tenant), json={"domain": name}, headers=auth(tenant.owner))
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def claimed(self, tenant: Tenant, name: str) -> dict[str, Any]:
        """The organization's claim on ``name`` (routing a domain in a connection claims it too)."""
        listed = self.client.get(domains_url(tenant), headers=auth(tenant.viewer)).json()["data"]
        found: list[dict[str, Any]] = [d for d in listed if d["domain"] == name]
        assert len(found) == 1, listed
        return found[0]

    def verify(self, tenant: Tenant, domain: dict[str, Any]) -> httpx.Response:
        url = domains_url(tenant, f"/{domain['id']}/verify")
        response: httpx.Response = self.client.post(url, headers=auth(tenant.owner))
        return response

    def verified(self, tenant: Tenant, domain: dict[str, Any]) -> dict[str, Any]:
        response = self.verify(tenant, domain)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def read(self, tenant: Tenant, domain: dict[str, Any]) -> dict[str, Any]:
        response = self.client.get(domains_url(tenant, f"/{domain['id']}"), headers=auth(tenant.viewer))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def publish_proof(self, domain: dict[str, Any]) -> None:
        self.dns.publish_txt(domain["verification"]["name"], domain["verification"]["value"])

    def saml_connection(self, tenant: Tenant, domains: list[str], **extra: Any) -> dict[str, Any]:
        body = {"protocol": "saml", "name": f"corp-saml-{uuid.uuid4().hex[:6]}", "domains": domains,
                "saml": {"metadata_xml": SAML_METADATA.read_text()}, **extra}
        response = self.client.post(f"/v1/organizations/{tenant.slug}/connections", json=body,
                                    headers=auth(tenant.owner))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def routes(self, domain: str, *, allow_unverified: bool = False) -> list[str]:
        with self.runtime.database.unit_of_work() as uow:
            return [c.id for c in connections_for_domain(uow, domain, allow_unverified=allow_unverified)]


def domains_url(tenant: Tenant, suffix: str = "") -> str:
    return f"/v1/organizations/{tenant.slug}/domains{suffix}"


def unique_domain(label: str = "corp") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}.example.test"


def start_app(data_dir: Path, database_url: str, dns: DnsServer) -> Iterator[App]:
    settings = make_settings(data_dir, database_url, dns_resolver=dns.address, allow_unverified_domains=False,
                             idp_timeout_seconds=DNS_TIMEOUT)
    runtime = Runtime.build(settings)
    clock = Clock(datetime.now(UTC))
    runtime.clock = clock
    runtime.database.migrate()
    try:
        with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
            yield App(Keyhall(client, runtime), dns, clock)
    finally:
        runtime.database.dispose()


@pytest.fixture
def app(tmp_path: Path, database_url: str, dns_server: DnsServer) -> Iterator[App]:
    """Keyhall on the session's database, asking the test's DNS server, with a clock of its own."""
    yield from start_app(tmp_path, database_url, dns_server)


@pytest.fixture
def isolated(tmp_path: Path, dns_server: DnsServer) -> Iterator[App]:
    """The same on a database of its own: the periodic job sees only this test's domains."""
    with fresh_database(tmp_path) as url:
        yield from start_app(tmp_path, url, dns_server)


# --- the record to publish, and on-demand checks --------------------------------------------------


def test_claim_shows_the_record_to_publish(app: App) -> None:
    tenant = app.tenant("Dns Record")
    name = unique_domain()
    domain = app.claim(tenant, name.upper() + ".")
    assert domain["domain"] == name
    assert domain["status"] == "pending"
    verification = domain["verification"]
    assert verification["type"] == "TXT"
    assert verification["name"] == f"_keyhall-challenge.{name}"
    assert verification["value"].startswith("keyhall-verification=")
    assert len(verification["value"]) > len("keyhall-verification=") + 20
    assert domain["last_checked_at"] is None
    assert domain["last_error"] is None
    assert domain["verified_at"] is None
    assert app.read(tenant, domain) == domain
    again = app.client.post(domains_url(tenant), json={"domain": name}, headers=auth(tenant.owner))
    assert again.status_code == 409


def test_record_absent_fails_with_the_reason(app: App) -> None:
    tenant = app.tenant("Dns Absent")
    domain = app.claim(tenant, unique_domain())
    checked = app.verified(tenant, domain)
    assert checked["status"] == "failed"
    assert checked["last_error"] == f"no TXT record at {domain['verification']['name']}"
    assert checked["last_checked_at"] is not None
    assert checked["verified_at"] is None
    assert app.read(tenant, domain) == checked
    assert (domain["verification"]["name"], "TXT") in app.dns.queries


def test_wrong_value_fails(app: App) -> None:
    tenant = app.tenant("Dns Wrong")
    domain = app.claim(tenant, unique_domain())
    app.dns.publish_txt(domain["verification"]["name"], "keyhall-verification=not-the-token", "v=spf1 -all")
    checked = app.verified(tenant, domain)
    assert checked["status"] == "failed"
    assert "hold other values than" in checked["last_error"]
    assert domain["verification"]["value"] in checked["last_error"]


def test_right_value_verifies(app: App) -> None:
    tenant = app.tenant("Dns Right")
    domain = app.claim(tenant, unique_domain())
    app.dns.publish_txt(domain["verification"]["name"], "something else", domain["verification"]["value"])
    checked = app.verified(tenant, domain)
    assert checked["status"] == "verified"
    assert checked["last_error"] is None
    assert checked["verified_at"] == checked["last_checked_at"]
    events = app.client.get(f"/v1/organizations/{tenant.slug}/audit-events",
                            params={"target_id": domain["id"], "action": "domain.checked"},
                            headers=auth(tenant.viewer)).json()["data"]
    assert [e["changes"]["status"] for e in events] == [{"from": "pending", "to": "verified"}]
    assert events[0]["actor"].startswith("key:")


def test_a_record_split_into_several_strings_is_read_as_their_concatenation(app: App) -> None:
    tenant = app.tenant("Dns Split")
    domain = app.claim(tenant, unique_domain())
    value = domain["verification"]["value"]
    app.dns.publish_txt(domain["verification"]["name"], (value[:10], value[10:25], value[25:]))
    assert app.verified(tenant, domain)["status"] == "verified"


def test_record_published_later(app: App) -> None:
    tenant = app.tenant("Dns Later")
    domain = app.claim(tenant, unique_domain())
    first = app.verified(tenant, domain)
    assert first["status"] == "failed"
    app.publish_proof(domain)
    app.clock.advance(minutes=2)
    second = app.verified(tenant, domain)
    assert second["status"] == "verified"
    assert second["last_error"] is None
    assert second["last_checked_at"] > first["last_checked_at"]


def test_nxdomain_fails(app: App) -> None:
    tenant = app.tenant("Dns Nx")
    name = unique_domain()
    app.dns.nxdomain_zone(name)
    domain = app.claim(tenant, name)
    checked = app.verified(tenant, domain)
    assert checked["status"] == "failed"
    assert checked["last_error"] == f"no TXT record at _keyhall-challenge.{name}"


def test_server_down_fails_quickly_with_a_clear_error(app: App) -> None:
    tenant = app.tenant("Dns Down")
    domain = app.claim(tenant, unique_domain())
    app.publish_proof(domain)
    app.dns.stop()
    started = time.monotonic()
    checked = app.verified(tenant, domain)
    assert time.monotonic() - started < DNS_TIMEOUT + 2
    assert checked["status"] == "failed"
    assert checked["last_error"].startswith(f"DNS timeout: no answer from DNS server {app.dns.address}")
    assert checked["last_checked_at"] is not None


def test_servfail_fails_a_pending_domain_but_keeps_a_verified_one(app: App) -> None:
    tenant = app.tenant("Dns Servfail")
    pending = app.claim(tenant, unique_domain())
    app.dns.servfail(pending["verification"]["name"])
    checked = app.verified(tenant, pending)
    assert checked["status"] == "failed"
    assert checked["last_error"] == (f"DNS server {app.dns.address} answered SERVFAIL for "
                                     f"{pending['verification']['name']}")

    domain = app.claim(tenant, unique_domain())
    app.publish_proof(domain)
    verified = app.verified(tenant, domain)
    assert verified["status"] == "verified"
    connection = app.saml_connection(tenant, [domain["domain"]])
    app.dns.servfail(domain["verification"]["name"])
    app.clock.advance(days=30)  # however long DNS misbehaves, sign-in keeps working
    hiccup = app.verified(tenant, domain)
    assert hiccup["status"] == "verified"
    assert hiccup["last_error"].startswith("DNS check failed, the domain stays verified:")
    assert "SERVFAIL" in hiccup["last_error"]
    assert hiccup["last_checked_at"] > verified["last_checked_at"]
    assert hiccup["verified_at"] == verified["verified_at"]
    assert app.routes(domain["domain"]) == [connection["id"]]


def test_a_verified_domain_whose_record_disappears_is_unverified_after_the_grace_period(app: App) -> None:
    tenant = app.tenant("Dns Grace")
    domain = app.claim(tenant, unique_domain())
    connection = app.saml_connection(tenant, [domain["domain"]])
    app.publish_proof(domain)
    verified = app.verified(tenant, domain)
    app.dns.remove(domain["verification"]["name"])

    app.clock.advance(days=1)
    warned = app.verified(tenant, domain)
    assert warned["status"] == "verified"
    assert "no TXT record" in warned["last_error"]
    assert "stays verified until" in warned["last_error"]
    assert app.routes(domain["domain"]) == [connection["id"]]

    app.publish_proof(domain)  # restored within the grace period: healed, and the clock restarts
    app.clock.advance(days=5)
    healed = app.verified(tenant, domain)
    assert healed["status"] == "verified"
    assert healed["last_error"] is None
    assert healed["verified_at"] > verified["verified_at"]

    app.dns.remove(domain["verification"]["name"])
    app.clock.advance(days=8)
    lost = app.verified(tenant, domain)
    assert lost["status"] == "failed"
    assert "no longer verified" in lost["last_error"]
    assert app.routes(domain["domain"]) == []


# --- ownership: one organization per domain, public domains, Raidiam's TextRecord ----------------------


def test_a_domain_verified_elsewhere_is_409(app: App) -> None:
    ours, theirs = app.tenant("Dns Owner"), app.tenant("Dns Rival")
    name = unique_domain()
    rival_claim = app.claim(theirs, name)  # claimed while nobody has verified it
    domain = app.claim(ours, name)
    app.publish_proof(domain)
    assert app.verified(ours, domain)["status"] == "verified"

    refused = app.client.post(domains_url(theirs), json={"domain": name}, headers=auth(theirs.owner))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "conflict"

    # Even with its own token published beside ours, the rival cannot verify it too.
    app.dns.publish_txt(domain["verification"]["name"], domain["verification"]["value"],
                        rival_claim["verification"]["value"])
    conflict = app.verify(theirs, rival_claim)
    assert conflict.status_code == 409, conflict.text
    assert "verified by another organization" in conflict.json()["error"]["message"]
    after = app.read(theirs, rival_claim)
    assert after["status"] == "failed"
    assert after["last_error"] == f"{name} is verified by another organization"
    assert app.read(ours, domain)["status"] == "verified"


@pytest.mark.parametrize("name", ["gmail.com", "GMail.com.", "@outlook.com", "proton.me"])
def test_public_email_domains_cannot_be_claimed(app: App, name: str) -> None:
    tenant = app.tenant("Dns Public")
    response = app.client.post(domains_url(tenant), json={"domain": name}, headers=auth(tenant.owner))
    assert response.status_code == 400, response.text
    assert "public email domain" in response.json()["error"]["message"]


def test_a_raidiam_text_record_at_the_challenge_name_verifies_the_domain(app: App, oidc_idp: OidcIdp) -> None:
    tenant = app.tenant("Dns Raidiam")
    name = unique_domain()
    servers = f"/organisations/{tenant.id}/authorisationservers"
    server = app.client.post(servers, json={"CustomerFriendlyName": "Corp IdP", "Issuer": oidc_idp.issuer,
                                            "ClientId": "corp-client", "ClientSecret": "corp-secret"},
                             headers=auth(tenant.owner))
    assert server.status_code == 201, server.text
    server_id = server.json()["AuthorisationServerId"]
    proof = f"corp-{uuid.uuid4().hex[:12]}"
    sso = app.client.post(f"{servers}/{server_id}/sso-configuration",
                          json={"DisplayName": "Corp", "Contacts": ["it@corp.example"], "Status": "Active",
                                "TextRecord": proof}, headers=auth(tenant.owner))
    assert sso.status_code == 201, sso.text
    routed = app.client.patch(f"/v1/organizations/{tenant.slug}/connections/{server_id}", json={"domains": [name]},
                              headers=auth(tenant.owner))
    assert routed.status_code == 200, routed.text

    domain = app.claimed(tenant, name)  # routing the domain claimed it
    assert domain["status"] == "pending"
    assert app.routes(name) == []
    app.dns.publish_txt(domain["verification"]["name"], proof)
    checked = app.verified(tenant, domain)
    assert checked["status"] == "verified", checked
    assert app.routes(name) == [server_id]


def test_a_text_record_proves_nothing_for_a_connection_not_routing_the_domain_or_copied_by_another_org(
    app: App,
) -> None:
    ours, theirs = app.tenant("Dns Text Ours"), app.tenant("Dns Text Theirs")
    name, other = unique_domain(), unique_domain("other")
    proof = f"corp-{uuid.uuid4().hex[:12]}"
    app.saml_connection(ours, [other], text_record=proof)  # routes another domain
    domain = app.claim(ours, name)
    app.dns.publish_txt(domain["verification"]["name"], proof)
    assert app.verified(ours, domain)["status"] == "failed"

    # Routed now, but another organization copied the (public) value onto its own connection.
    mine = app.saml_connection(ours, [name], text_record=proof)
    app.saml_connection(theirs, [name], text_record=proof)
    rival = app.claimed(theirs, name)
    assert app.verified(ours, domain)["status"] == "failed"
    assert app.verified(theirs, rival)["status"] == "failed"
    # The token, which only our organization was given, still proves it.
    app.dns.publish_txt(domain["verification"]["name"], proof, domain["verification"]["value"])
    assert app.verified(ours, domain)["status"] == "verified"
    assert app.routes(name) == [mine["id"]]


def test_home_realm_discovery_routes_a_domain_only_once_it_is_verified(app: App) -> None:
    tenant = app.tenant("Dns Routing")
    name = unique_domain()
    connection = app.saml_connection(tenant, [name])
    assert app.routes(name) == []
    assert app.routes(name, allow_unverified=True) == [connection["id"]]  # the development setting
    domain = app.claimed(tenant, name)
    assert domain["status"] == "pending"
    assert app.verified(tenant, domain)["status"] == "failed"
    assert app.routes(name) == []
    app.publish_proof(domain)
    assert app.verified(tenant, domain)["status"] == "verified"
    assert app.routes(name) == [connection["id"]]


# --- the periodic check ---------------------------------------------------------------------------------


def test_the_periodic_check_flips_a_pending_domain_once_the_record_appears(isolated: App) -> None:
    app = isolated
    tenant = app.tenant("Dns Job")
    domain = app.claim(tenant, unique_domain())
    verified_before = app.claim(tenant, unique_domain())
    app.publish_proof(verified_before)
    assert app.verified(tenant, verified_before)["status"] == "verified"

    summary = check_domains(app.runtime)  # the verified one was just checked: not due
    assert summary == {"checked": 1, "changed": 1, "dns_errors": 0, "conflicts": 0, "errors": 0,
                       "pending": 0, "verified": 0, "failed": 1}
    assert app.read(tenant, domain)["status"] == "failed"

    app.publish_proof(domain)
    app.clock.advance(minutes=1)
    assert check_domains(app.runtime)["checked"] == 0  # checked a minute ago: not due yet
    app.clock.advance(minutes=5)
    summary = check_domains(app.runtime)
    assert summary["checked"] == 1
    assert summary["verified"] == 1
    after = app.read(tenant, domain)
    assert after["status"] == "verified"
    assert after["last_error"] is None
    events = app.client.get(f"/v1/organizations/{tenant.slug}/audit-events",
                            params={"target_id": domain["id"], "action": "domain.checked"},
                            headers=auth(tenant.viewer)).json()["data"]
    assert [e["changes"]["status"]["to"] for e in events] == ["failed", "verified"]
    assert {e["actor"] for e in events} == {"key:system"}

    app.clock.advance(hours=25)  # verified domains are re-checked daily
    assert check_domains(app.runtime)["checked"] == 2

    app.dns.stop()  # DNS down during a pass: noted, and both stay verified
    app.clock.advance(hours=25)
    summary = check_domains(app.runtime)
    assert (summary["checked"], summary["dns_errors"], summary["verified"]) == (2, 2, 2)
    assert app.read(tenant, domain)["last_error"].startswith("DNS check failed, the domain stays verified: DNS timeout")


def test_the_background_checker_runs_and_stops_cleanly(isolated: App) -> None:
    app = isolated
    tenant = app.tenant("Dns Thread")
    domain = app.claim(tenant, unique_domain())
    app.publish_proof(domain)
    assert not DomainChecker(app.runtime, interval=0).running

    checker = DomainChecker(app.runtime, interval=0.05)
    checker.start()
    try:
        deadline = time.monotonic() + 10
        while app.read(tenant, domain)["status"] != "verified" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.read(tenant, domain)["status"] == "verified"
        assert checker.running
    finally:
        checker.stop()
    assert not checker.running
    assert checker.passes >= 1

    off = DomainChecker(app.runtime, interval=0)
    off.start()
    assert not off.running
    off.stop()


def test_the_checker_attached_to_the_app_lives_as_long_as_the_app_serves(isolated: App) -> None:
    app = isolated
    tenant = app.tenant("Dns Lifespan")
    domain = app.claim(tenant, unique_domain())
    app.publish_proof(domain)
    served = create_app(app.runtime.settings, app.runtime)
    checker = DomainChecker(app.runtime, interval=0.05)
    checker.attach(served)
    assert not checker.running
    with TestClient(served, raise_server_exceptions=False) as client:
        assert checker.running
        deadline = time.monotonic() + 10
        while checker.passes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        body = client.get(domains_url(tenant, f"/{domain['id']}"), headers=auth(tenant.viewer)).json()
        assert body["status"] == "verified"
    assert not checker.running
