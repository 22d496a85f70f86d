"""Property-based fuzzing of every operation in Keyhall's OpenAPI document, plus hostile raw input.

Part 1, ``test_operation``: Schemathesis reads ``/openapi.json`` (the native ``/v1`` API and the
five seed dialects) and, for each operation, Hypothesis generates valid and invalid requests
(path, query, headers, JSON bodies). Each one is sent in process to the ASGI app on a real
database (SQLite, or PostgreSQL under ``KEYHALL_TEST_DATABASE_URL``), authenticated as an
organization owner, and its response is checked:

- ``not_a_server_error``: never a 5xx (DESIGN.md: bad input is a 4xx naming the field);
- ``response_schema_conformance``: a documented status code answers the documented JSON schema;
- ``content_type_conformance``: a documented status code answers the documented media type.

Every operation that may write starts from a fresh organization that owns real resources (a SAML and
an OIDC connection, a Raidiam SSO configuration, a claimed domain, a spare API key, an application);
the read-only (GET) operations, which cannot change it, share one such organization, each with an
owner key of its own (its own rate-limit budget, as a fresh tenant would have). Path parameters are
mostly drawn from those ids, so the fuzzer reaches the handlers instead of stopping at 404 (the
generated value stays one of the choices). Operations that only an instance administrator may call
(creating and deleting organizations, ``/v1/applications``) are sent with the instance key,
everything else with the owner's key.

Nothing leaves the machine: name resolution is confined to loopback for the module (a name that
does not resolve is what an offline IdP looks like, so IdP validation answers 422 with the
reason), the OIDC IdP is an in-process provider on 127.0.0.1, and domain checks ask an
in-process DNS server.

Part 2, the ``test_hostile_*`` tests: what Schemathesis does not send — CR/LF injected into
``/oauth2/authorize`` redirect parameters (hand-picked and generated), oversized bodies (with and
without Content-Length), wrong content types, 10,000-deep JSON, invalid UTF-8 and U+0000, on
every JSON write surface and the form endpoints; refused requests must change nothing.

Bounded for CI (2 cores): ``EXAMPLES_BUDGET`` generated cases shared equally by the operations
(at most ``MAX_EXAMPLES``, at least ``MIN_EXAMPLES`` each), derandomized
(the same cases on every run), no Hypothesis example database, no per-example deadline.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from sqlalchemy.engine import make_url

from keyhall.app import create_app
from keyhall.core.vocabulary import Role
from keyhall.runtime import Runtime
from tests.support.api import Keyhall, Tenant, auth
from tests.support.database import fresh_database
from tests.support.dns_server import DnsServer
from tests.support.hostile_idp import HostileIdp
from tests.support.settings import make_settings

MAX_EXAMPLES = 25  # per operation, and for the generated hostile input
MIN_EXAMPLES = 10  # per operation, however many there are
#: Generated cases for all operations together (about a minute on 2 cores): a new operation takes
#: its share from the others rather than adding 25 cases to every CI run.
EXAMPLES_BUDGET = 2100
FIXTURES = Path(__file__).parent.parent / "fixtures" / "saml"
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

#: Operations only an instance administrator may call; fuzzed with the instance key.
INSTANCE_ONLY = {
    ("POST", "/v1/organizations"),
    ("DELETE", "/v1/organizations/{org}"),
    ("GET", "/v1/applications"),
    ("POST", "/v1/applications"),
    ("GET", "/v1/applications/{client_id}"),
    ("PATCH", "/v1/applications/{client_id}"),
    ("DELETE", "/v1/applications/{client_id}"),
    ("GET", "/v1/events"),
    ("GET", "/v1/webhook-endpoints"),
    ("POST", "/v1/webhook-endpoints"),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"),
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"),
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/secret"),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver"),
}


# --- the schema --------------------------------------------------------------------------------


def _openapi_document() -> dict[str, Any]:
    """The app's ``/openapi.json``, read from an app built on a throwaway data directory.

    Building the app opens no database connection; the fuzzed requests go to the app of the
    ``fuzz_target`` fixture (``call_and_validate(app=...)``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(make_settings(Path(tmp), f"sqlite:///{tmp}/schema-only.db"))
        document: dict[str, Any] = app.openapi()
        return document


# A config of its own: a ``schemathesis.toml`` somewhere up the tree must not change this suite.
_DOCUMENT = _openapi_document()
schema = schemathesis.openapi.from_dict(_DOCUMENT, config=schemathesis.Config())
OPERATIONS = sum(method in ("get", "post", "put", "patch", "delete")
                 for item in _DOCUMENT["paths"].values() for method in item)
EXAMPLES_PER_OPERATION = max(MIN_EXAMPLES, min(MAX_EXAMPLES, EXAMPLES_BUDGET // max(OPERATIONS, 1)))


# --- network sandbox -----------------------------------------------------------------------------


def _loopback_only(real: Callable[..., Any], *, also: tuple[str, ...] = ()) -> Callable[..., Any]:
    """``socket.getaddrinfo`` that resolves loopback (and the test database's host) only.

    Fuzzed IdP URLs, LDAP hosts and issuers must not make the suite contact the network; a name
    that does not resolve is what an unreachable IdP looks like, and Keyhall answers it with 422.
    """
    allowed = {"localhost", *(h.lower() for h in also if h)}

    def is_allowed(host: str) -> bool:
        if host.lower() in allowed:
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
        if name is None or is_allowed(str(name)):
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return getaddrinfo


# --- the app under test and its seeded tenant -------------------------------------------------------


@dataclass
class Seed:
    """A fresh organization with one of everything, and the ids the fuzzer aims at."""

    tenant: Tenant
    instance_token: str
    saml_id: str
    oidc_id: str
    sso_configuration_id: str
    domain_id: str
    spare_key_id: str
    client_id: str
    endpoint_id: str
    delivery_id: str

    def path_values(self) -> dict[str, list[str]]:
        """Real values per path-parameter name (the fuzzer mostly picks one of these)."""
        connections = [self.oidc_id, self.saml_id]
        return {
            "org": [self.tenant.slug, self.tenant.id],
            "organization_id": [self.tenant.id, self.tenant.slug],
            "OrganisationId": [self.tenant.id],
            "connection_id": connections,
            "connector_id": connections,
            "configuration_uuid": connections,
            "AuthorisationServerId": [self.oidc_id],
            "ssoConfigurationId": [self.sso_configuration_id],
            "domain_id": [self.domain_id],
            "key_id": [self.spare_key_id],
            "client_id": [self.client_id],
            "endpoint_id": [self.endpoint_id],
            "delivery_id": [self.delivery_id],
        }


@dataclass
class FuzzTarget:
    app: Any
    keyhall: Keyhall
    idp: HostileIdp


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    dns = DnsServer().start()
    with pytest.MonkeyPatch.context() as patch, fresh_database(tmp_path_factory.mktemp("fuzz-db")) as url:
        database_host = make_url(url).host or ""  # PostgreSQL under KEYHALL_TEST_DATABASE_URL
        patch.setattr(socket, "getaddrinfo", _loopback_only(socket.getaddrinfo, also=(database_host,)))
        settings = make_settings(tmp_path_factory.mktemp("fuzz-data"), url, dns_resolver=dns.address)
        runtime = Runtime.build(settings)
        runtime.database.migrate()
        app = create_app(settings, runtime)
        try:
            with HostileIdp() as idp, TestClient(app, raise_server_exceptions=False) as client:
                yield FuzzTarget(app=app, keyhall=Keyhall(client, runtime), idp=idp)
        finally:
            runtime.database.dispose()
            dns.stop()


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def seed_tenant(target: FuzzTarget) -> Seed:
    kh, idp = target.keyhall, target.idp
    client = kh.client
    tenant = kh.tenant("Fuzz")
    owner = auth(tenant.owner)
    org_url = f"/v1/organizations/{tenant.slug}"
    saml = _created(client.post(f"{org_url}/connections", headers=owner, json={
        "protocol": "saml", "name": "fuzz-saml",
        "saml": {"metadata_xml": (FIXTURES / "metadata-valid.xml").read_text()},
    }))
    # Made through Keycard, so it is also the organization's default connection (Keycard's one).
    oidc = _created(client.post(f"/organizations/{tenant.id}/sso-connection", headers=owner, json={
        "identifier": idp.issuer, "client_id": idp.client_id, "client_secret": idp.client_secret,
    }))
    sso = _created(client.post(
        f"/organisations/{tenant.id}/authorisationservers/{oidc['id']}/sso-configuration", headers=owner,
        json={"DisplayName": "Fuzz", "Contacts": ["it@fuzz.example"]},
    ))
    domain = _created(client.post(f"{org_url}/domains", headers=owner,
                                  json={"domain": f"fuzz-{uuid.uuid4().hex[:8]}.example"}))
    key = _created(client.post(f"{org_url}/keys", headers=owner, json={"role": "viewer", "name": "spare"}))
    application = _created(client.post("/v1/applications", headers=auth(kh.instance_token), json={
        "name": "Fuzz app", "redirect_uris": ["https://app.fuzz.example/callback"],
    }))
    # A webhook endpoint with one delivery in its log: a pre-created user, deleted.
    endpoint = _created(client.post("/v1/webhook-endpoints", headers=auth(kh.instance_token), json={
        "url": "http://127.0.0.1:9/fuzz-hook", "event_types": ["user.deleted"]}))
    user = _created(client.post(f"{org_url}/users", headers=owner,
                                json={"email": "gone@fuzz.example", "connection_id": saml["id"]}))
    assert client.delete(f"{org_url}/users/{user['id']}", headers=owner).status_code == 204
    [delivery] = _created(client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries",
                                     headers=auth(kh.instance_token)))["data"]
    return Seed(tenant=tenant, instance_token=kh.instance_token, saml_id=saml["id"], oidc_id=oidc["id"],
                sso_configuration_id=sso["ID"], domain_id=domain["id"], spare_key_id=key["key_id"],
                client_id=application["client_id"], endpoint_id=endpoint["id"], delivery_id=delivery["id"])


#: The seed of the running test, read by the generation hooks below (they run inside the test).
_current: dict[str, Seed] = {}


@pytest.fixture(scope="module")
def read_only_seeds() -> dict[str, Seed]:
    """The organization seeded once for the read-only operations (made by the first of them)."""
    return {}


@pytest.fixture
def seed(request: pytest.FixtureRequest, fuzz_target: FuzzTarget, read_only_seeds: dict[str, Seed]) -> Iterator[Seed]:
    label = str(getattr(request.node, "operation_label", None) or "")  # Schemathesis' "METHOD /path"
    if label.startswith("GET "):
        shared = read_only_seeds.get("GET")
        if shared is None:
            shared = read_only_seeds["GET"] = seed_tenant(fuzz_target)
        owner = fuzz_target.keyhall.issue_key(shared.tenant.id, Role.OWNER)
        seeded = dataclasses.replace(shared, tenant=dataclasses.replace(shared.tenant, owner=owner))
    else:
        seeded = seed_tenant(fuzz_target)
    _current["seed"] = seeded
    try:
        yield seeded
    finally:
        _current.clear()


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
    """Aim most cases at the seeded resources; the generated value stays one of the choices."""
    seeded = _current.get("seed")
    if seeded is None or not path_parameters:
        return st.just(path_parameters)
    known = seeded.path_values()
    fields = {}
    for name, generated in path_parameters.items():
        choices = [*known.get(name, []), generated]
        fields[name] = st.sampled_from(choices) if len(choices) > 1 else st.just(generated)
    return st.fixed_dictionaries(fields)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> Any:
    """Luzmo's envelope may carry its own key/token pair; mostly let the bearer token authenticate."""
    operation = context.operation
    if operation is None or operation.path != "/0.1.0/ssoconfig" or not isinstance(body, dict):
        return st.just(body)
    seeded = _current.get("seed")
    stripped = {k: v for k, v in body.items() if k not in ("key", "token")}
    if seeded is not None and "id" in body:
        stripped["id"] = seeded.oidc_id
    return st.sampled_from([stripped, body])


@pytest.fixture
def fuzzed(request: pytest.FixtureRequest) -> Iterator[list[tuple[str, str]]]:
    """The cases ``test_operation`` ran for its operation; afterwards there must be some, all of it.

    Schemathesis makes one pytest item per operation and runs its generated cases inside it: an item
    whose body ran no case (a hook or a setting that filters them all out) would pass an empty fuzz.
    This makes it fail. (pytest-xdist's ``--dist loadfile`` went further: it reported the items as
    passed without running them at all, teardown included, which no fixture can see; the Makefile
    uses the default ``--dist load``.)
    """
    ran: list[tuple[str, str]] = []
    yield ran
    label = str(getattr(request.node, "operation_label", None) or request.node.name)
    assert ran, f"{label}: no generated case was run"
    assert {f"{method} {path}" for method, path in ran} == {label}, (label, set(ran))


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    # ``seed`` is per operation on purpose: the examples of one operation share its tenant.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)
def test_operation(case: schemathesis.Case[Any], fuzz_target: FuzzTarget, seed: Seed,
                   fuzzed: list[tuple[str, str]]) -> None:
    key = (case.operation.method.upper(), case.operation.path)
    fuzzed.append(key)
    token = seed.instance_token if key in INSTANCE_ONLY else seed.tenant.owner
    case.call_and_validate(app=fuzz_target.app, headers=auth(token), checks=CHECKS)


# --- hostile raw input ------------------------------------------------------------------------------

MARKER = "X-Injected-By-Fuzz"
INJECTIONS = [
    f"abc\r\n{MARKER}: 1",
    f"abc\n{MARKER}: 1",
    f"abc\r{MARKER}: 1",
    f"abc\r\n\r\n<html>{MARKER}</html>",
    f"abc\r\nSet-Cookie: {MARKER}=1",
    f"abc\u2028{MARKER}: 1",
    f"abc\x00\r\n{MARKER}: 1",
]
REDIRECT_URI = "https://app.fuzz.example/callback"


@pytest.fixture(scope="module")
def hostile(fuzz_target: FuzzTarget) -> Seed:
    """One seeded tenant for the hostile-input tests (they send requests that must change nothing)."""
    return seed_tenant(fuzz_target)


def assert_no_injected_header(response: Any) -> None:
    for name, value in response.headers.multi_items():
        assert MARKER.lower() not in name.lower(), (name, value)
        for raw in ("\r", "\n", "\x85", "\u2028", "\u2029", "\x00", f"{MARKER}: 1", f"{MARKER}=1"):
            assert raw not in value, (name, value)


def authorize_params(seed: Seed, **changes: str) -> dict[str, str]:
    params = {"client_id": seed.client_id, "redirect_uri": REDIRECT_URI, "response_type": "code",
              "scope": "openid email", "state": "s", "nonce": "n", "connection": seed.oidc_id}
    params.update(changes)
    return params


@pytest.mark.parametrize("injected", INJECTIONS)
@pytest.mark.parametrize("where", ["state", "redirect_uri", "nonce", "login_hint", "error-state"])
def test_hostile_authorize_header_injection(fuzz_target: FuzzTarget, hostile: Seed, where: str, injected: str) -> None:
    """CR/LF in a redirect parameter of /oauth2/authorize never becomes a response header."""
    if where == "redirect_uri":
        params = authorize_params(hostile, redirect_uri=REDIRECT_URI + injected)
    elif where == "error-state":  # an error redirect back to the client carries the state
        params = authorize_params(hostile, response_type="token", state=injected)
    else:
        params = authorize_params(hostile, **{where: injected})
    response = fuzz_target.keyhall.client.get("/oauth2/authorize", params=params, follow_redirects=False)
    assert response.status_code < 500, response.text
    assert_no_injected_header(response)
    if where == "redirect_uri":  # not the registered URI: shown as an error, never redirected to
        assert response.status_code == 400
    if response.status_code not in (302, 303):  # U+0000 is refused on PostgreSQL (see the NUL tests below)
        assert "location" not in response.headers



@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None)
@hypothesis.given(
    where=st.sampled_from(["state", "nonce", "login_hint", "error-state", "redirect_uri"]),
    before=st.text(max_size=12),
    breaks=st.lists(st.sampled_from(["\r\n", "\n", "\r", "\x85", "\u2028", "\u2029", "%0d%0a", "\x00"]),
                    min_size=1, max_size=3),
)
def test_hostile_authorize_generated_line_breaks(fuzz_target: FuzzTarget, hostile: Seed, where: str, before: str,
                                                 breaks: list[str]) -> None:
    """Generated text with line breaks before a header line, in any redirect parameter: no header."""
    test_hostile_authorize_header_injection(fuzz_target, hostile, where,
                                            before + "".join(breaks) + f"{MARKER}: 1")


@pytest.mark.parametrize("injected", INJECTIONS[:3])
def test_hostile_redirect_uri_with_line_breaks_is_not_registered(fuzz_target: FuzzTarget, injected: str) -> None:
    """A redirect URI that carries CR/LF cannot be registered, so it can never be redirected to."""
    kh = fuzz_target.keyhall
    response = kh.client.post("/v1/applications", headers=auth(kh.instance_token),
                              json={"name": "Hostile app", "redirect_uris": [REDIRECT_URI + injected]})
    assert response.status_code == 400, response.text
    assert "redirect_uris" in response.json()["error"]["message"]


# --- hostile bodies: every JSON write surface, plus the form endpoints -----------------------------


@dataclass(frozen=True)
class Surface:
    method: str
    path: str  # formatted with the seed's ids
    key: str = "owner"  # "owner", "instance", or "none" (the form endpoints authenticate otherwise)
    form: bool = False  # application/x-www-form-urlencoded, not JSON
    reads_body: bool = True  # POST /oauth2/userinfo reads only its Authorization header

    def url(self, seed: Seed) -> str:
        return self.path.format(org=seed.tenant.slug, org_id=seed.tenant.id, saml=seed.saml_id, oidc=seed.oidc_id,
                                sso=seed.sso_configuration_id, client=seed.client_id)

    @property
    def raidiam(self) -> bool:
        return self.path.startswith("/organisations/")

    @property
    def luzmo(self) -> bool:
        return self.path.startswith("/0.1.0/")

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


JSON_SURFACES = [
    Surface("POST", "/v1/organizations", key="instance"),
    Surface("PATCH", "/v1/organizations/{org}"),
    Surface("POST", "/v1/organizations/{org}/keys"),
    Surface("POST", "/v1/organizations/{org}/connections"),
    Surface("PATCH", "/v1/organizations/{org}/connections/{saml}"),
    Surface("PUT", "/v1/organizations/{org}/connections/{oidc}"),
    Surface("POST", "/v1/organizations/{org}/domains"),
    Surface("POST", "/v1/organizations/{org}/users"),
    Surface("POST", "/v1/applications", key="instance"),
    Surface("PATCH", "/v1/applications/{client}", key="instance"),
    Surface("POST", "/0.1.0/ssoconfig"),
    Surface("POST", "/api/sso-connectors"),
    Surface("PATCH", "/api/sso-connectors/{oidc}"),
    Surface("POST", "/organizations/{org_id}/sso-connection"),
    Surface("PATCH", "/organizations/{org_id}/sso-connection"),
    Surface("POST", "/api/v1/sso/configurations"),
    Surface("PUT", "/api/v1/sso/configurations/{saml}"),
    Surface("PATCH", "/api/v1/sso/configurations/{oidc}"),
    Surface("POST", "/organisations/{org_id}/authorisationservers"),
    Surface("PUT", "/organisations/{org_id}/authorisationservers/{oidc}"),
    Surface("POST", "/organisations/{org_id}/authorisationservers/{oidc}/sso-configuration"),
    Surface("PUT", "/organisations/{org_id}/authorisationservers/{oidc}/sso-configuration/{sso}"),
]
FORM_SURFACES = [
    Surface("POST", "/oauth2/token", key="none", form=True),
    Surface("POST", "/oauth2/userinfo", key="none", form=True, reads_body=False),
    Surface("POST", "/sso/{saml}/saml/acs", key="none", form=True),
    Surface("POST", "/sso/{oidc}/ldap", key="none", form=True),
    Surface("POST", "/login", key="none", form=True),
]


def send(target: FuzzTarget, seed: Seed, surface: Surface, content: Any) -> Any:
    headers = {"instance": auth(seed.instance_token), "owner": auth(seed.tenant.owner)}.get(surface.key, {})
    headers["Content-Type"] = "application/x-www-form-urlencoded" if surface.form else "application/json"
    return target.keyhall.client.request(surface.method, surface.url(seed), content=content, headers=headers)


def snapshot(target: FuzzTarget, seed: Seed) -> list[tuple[str, int]]:
    """The tenant's connections and their versions: a refused request must leave them as they were."""
    response = target.keyhall.client.get(f"/v1/organizations/{seed.tenant.slug}/connections?limit=200",
                                         headers=auth(seed.tenant.owner))
    assert response.status_code == 200, response.text
    return sorted((c["id"], c["version"]) for c in response.json()["data"])


def assert_refused(surface: Surface, response: Any, *statuses: int) -> None:
    """A 4xx among ``statuses``, in the surface's documented error shape (Raidiam: ``{"errors": [...]}``)."""
    shown = f"{surface} -> {response.status_code}: {response.text[:500]}"
    assert response.status_code < 500, shown
    assert response.status_code in statuses, shown
    if surface.form:
        return
    body = response.json()
    if surface.raidiam:
        assert set(body) == {"errors"}, shown
        assert body["errors"], shown
        assert all(isinstance(e, str) for e in body["errors"]), shown
    elif surface.luzmo:  # what Luzmo's SDKs read, beside the native object
        assert set(body) <= {"message", "validation", "error"}, shown
        assert isinstance(body["message"], str), shown
        assert body["message"] == body["error"]["message"], shown
        assert all(isinstance(r, list) and r for r in body.get("validation", {}).values()), shown
    else:
        assert set(body) == {"error"}, shown
        assert body["error"]["message"], shown


def oversized(target: FuzzTarget, surface: Surface) -> bytes:
    padding = "a" * (target.keyhall.runtime.settings.max_body_bytes + 1)
    return (f"name={padding}" if surface.form else '{"name": "' + padding + '"}').encode()


@pytest.mark.parametrize("surface", JSON_SURFACES + FORM_SURFACES, ids=str)
def test_hostile_oversized_body_is_413(fuzz_target: FuzzTarget, hostile: Seed, surface: Surface) -> None:
    """A body over ``KEYHALL_MAX_BODY_BYTES`` that declares its length is refused before it is read."""
    before = snapshot(fuzz_target, hostile)
    assert_refused(surface, send(fuzz_target, hostile, surface, oversized(fuzz_target, surface)), 413)
    assert snapshot(fuzz_target, hostile) == before


@pytest.mark.parametrize("surface", [s for s in JSON_SURFACES + FORM_SURFACES if s.reads_body], ids=str)
def test_hostile_oversized_chunked_body_is_413(fuzz_target: FuzzTarget, hostile: Seed, surface: Surface) -> None:
    """The same body sent chunked (no Content-Length): the limit must hold while the body is read."""
    data = oversized(fuzz_target, surface)
    before = snapshot(fuzz_target, hostile)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 65536):
            yield data[start:start + 65536]

    assert_refused(surface, send(fuzz_target, hostile, surface, chunks()), 413)
    assert snapshot(fuzz_target, hostile) == before


@pytest.mark.parametrize("surface", JSON_SURFACES, ids=str)
def test_hostile_wrong_content_type_is_415(fuzz_target: FuzzTarget, hostile: Seed, surface: Surface) -> None:
    before = snapshot(fuzz_target, hostile)
    headers = {"instance": auth(hostile.instance_token), "owner": auth(hostile.tenant.owner)}[surface.key]
    response = fuzz_target.keyhall.client.request(surface.method, surface.url(hostile), content=b"name=x",
                                                  headers={**headers, "Content-Type": "text/plain"})
    assert_refused(surface, response, 415)
    assert snapshot(fuzz_target, hostile) == before


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("surface", JSON_SURFACES, ids=str)
def test_hostile_deeply_nested_json_is_4xx(fuzz_target: FuzzTarget, hostile: Seed, surface: Surface,
                                           kind: str) -> None:
    """10,000 levels of nesting, alone and inside a plausible body, is a 4xx and changes nothing."""
    before = snapshot(fuzz_target, hostile)
    assert_refused(surface, send(fuzz_target, hostile, surface, nested(10_000, kind)), 400, 422)
    wrapped = b'{"action": "create", "version": "0.1.0", "properties": {"config": ' + nested(10_000, kind) + b"}}"
    assert_refused(surface, send(fuzz_target, hostile, surface, wrapped), 400, 422)
    assert snapshot(fuzz_target, hostile) == before


INVALID_UTF8 = [
    b'{"name": "\xff\xfe"}',
    b'{"name": "caf\xc3"}',  # a truncated sequence
    b'{"name": "\xed\xa0\x80"}',  # an encoded surrogate
    b'{"name": "\xc0\xaf"}',  # an overlong "/"
    b"\xef\xbb\xbf\xff",  # a BOM, then garbage
]


@pytest.mark.parametrize("raw", INVALID_UTF8, ids=lambda b: b.hex())
@pytest.mark.parametrize("surface", JSON_SURFACES, ids=str)
def test_hostile_invalid_utf8_json_is_400(fuzz_target: FuzzTarget, hostile: Seed, surface: Surface,
                                          raw: bytes) -> None:
    before = snapshot(fuzz_target, hostile)
    assert_refused(surface, send(fuzz_target, hostile, surface, raw), 400)
    assert snapshot(fuzz_target, hostile) == before


@pytest.mark.parametrize("surface", FORM_SURFACES, ids=str)
def test_hostile_invalid_utf8_form_is_4xx(fuzz_target: FuzzTarget, hostile: Seed, surface: Surface) -> None:
    response = send(fuzz_target, hostile, surface, b"grant_type=\xff\xfe&code=\xc3&email=\xed\xa0\x80&tx=\xc0\xaf")
    assert_refused(surface, response, 400, 401, 403, 404, 415, 422)


# --- U+0000: SQLite stores it, PostgreSQL refuses it; both must answer the same, at the boundary ------


def test_hostile_nul_in_a_stored_text_is_400_naming_the_field(fuzz_target: FuzzTarget, seed: Seed) -> None:
    response = fuzz_target.keyhall.client.patch(
        f"/v1/organizations/{seed.tenant.slug}/connections/{seed.saml_id}", json={"display_name": "Corp\x00SSO"},
        headers=auth(seed.tenant.owner))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"].get("field") == "display_name", response.text


def test_hostile_nul_in_a_token_request_answers_in_rfc6749_shape(fuzz_target: FuzzTarget, hostile: Seed) -> None:
    response = fuzz_target.keyhall.client.post(
        "/oauth2/token", content=b"grant_type=authorization_code&code=a%00b&client_id=a%00b&client_secret=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json().get("error"), str), response.text  # RFC 6749 §5.2


def test_hostile_nul_in_authorize_client_id_shows_the_error_page(fuzz_target: FuzzTarget, hostile: Seed) -> None:
    response = fuzz_target.keyhall.client.get(
        "/oauth2/authorize", params=authorize_params(hostile, client_id="app\x00"), follow_redirects=False)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html"), response.text
