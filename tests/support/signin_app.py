"""A Keyhall app in process (ASGI, on a real database) with sign-in connections ready to be hit:
an OIDC connection to the hostile test provider (``tests.support.hostile_idp``) and a SAML
connection pinning the fixtures' IdP key (``make_responses.make_keys().rsa``), whose Responses
``signed_response`` builds and signs — after any mutation, so the signature still holds.

``SigninApp.server_errors`` collects every log record that carries an exception or is an error:
a request that makes one has crashed somewhere, whatever status it answered.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from lxml import etree

from keyhall.app import create_app
from keyhall.runtime import Runtime
from tests.fixtures.saml.responses.make_responses import Keys, make_keys
from tests.support import saml_responses as idp
from tests.support.api import Keyhall, Tenant, auth
from tests.support.database import fresh_database
from tests.support.hostile_idp import HostileIdp
from tests.support.settings import make_settings

SAML = idp.SAML_NS
VERIFIER = "fuzz-verifier-" + "v" * 43  # PKCE (RFC 7636): the products' code_verifier for every sign-in here
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
SSO_URL = "https://idp.keyhall.test/saml/sso"
LOGIN_COOKIE = "keyhall_login"


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Product:
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass
class SigninApp:
    client: TestClient
    keyhall: Keyhall
    idp: HostileIdp
    keys: Keys
    tenant: Tenant
    product: Product
    oidc_id: str
    saml_id: str
    saml: dict[str, Any]  # the SAML connection as the API reads it (acs_url, sp_metadata_url...)
    collector: _Collector = field(default_factory=_Collector)

    @property
    def server_errors(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.collector.records]

    def failed_reason(self, response: Any) -> str:
        """The reason of the one login.failed audit event the request of ``response`` wrote."""
        request_id = response.headers["x-request-id"]
        events = []
        with self.keyhall.runtime.database.unit_of_work() as uow:
            for organization_id in (None, self.tenant.id):  # failures no connection ties to an organization
                page = uow.audit.list_page(organization_id, limit=500, cursor=None, action="login.failed")
                events += [e for e in page.items if e.request_id == request_id]
        assert len(events) == 1, request_id
        return str(events[0].changes["reason"])

    def authorize_params(self, connection_id: str | None, **changes: str) -> dict[str, str]:
        params = {"client_id": self.product.client_id, "redirect_uri": self.product.redirect_uri,
                  "response_type": "code", "scope": "openid email", "state": "st", "nonce": "nn",
                  "code_challenge": CHALLENGE, "code_challenge_method": "S256",
                  **({"connection": connection_id} if connection_id else {})}
        params.update(changes)
        return params

    def login_page(self) -> tuple[str, str, str]:
        """(tx, csrf, login cookie) of a new sign-in waiting on the login page's email form."""
        self.client.cookies.clear()
        page = self.client.get("/oauth2/authorize", params=self.authorize_params(None))
        assert page.status_code == 200, page.text
        cookie = page.cookies[LOGIN_COOKIE]
        self.client.cookies.clear()
        tx = page.text.split('name="tx" value="', 1)[1].split('"', 1)[0]
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert tx == cookie
        return tx, csrf, cookie

    def start(self, connection_id: str, **changes: str) -> tuple[str, str]:
        """A fresh browser's sign-in sent to the connection: (the IdP URL Keyhall redirected to, the
        browser's login cookie). The client's cookie jar is left empty."""
        self.client.cookies.clear()
        started = self.client.get("/oauth2/authorize", params=self.authorize_params(connection_id, **changes))
        assert started.status_code == 303, started.text
        cookie = started.cookies.get(LOGIN_COOKIE) or self.client.cookies.get(LOGIN_COOKIE)
        assert cookie, started.headers
        self.client.cookies.clear()
        return started.headers["location"], cookie

    def start_saml(self, **changes: str) -> tuple[str, str, str]:
        """(RelayState, the AuthnRequest's ID, the login cookie) of a new SP-initiated SAML sign-in;
        ``changes`` go into the product's authorization request (``prompt``, ``max_age``...)."""
        location, cookie = self.start(self.saml_id, **changes)
        query = parse_qs(urlsplit(location).query)
        request = etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15))
        return query["RelayState"][0], str(request.get("ID")), cookie

    def saml_spec(self, now: datetime, *, in_response_to: str | None, **changes: Any) -> idp.ResponseSpec:
        """A Response this connection accepts at ``now`` (answering ``in_response_to``)."""
        spec = idp.ResponseSpec(now, destination=self.saml["acs_url"], recipient=self.saml["acs_url"],
                                audience=self.saml["sp_metadata_url"], in_response_to=in_response_to)
        return replace(spec, **changes)

    def redeem(self, product_callback: str, *, pkce: bool = True) -> dict[str, Any]:
        """The product redeems the code in its callback URL; returns the token endpoint's JSON.
        ``pkce``: the sign-in began with the product's PKCE challenge (not IdP-initiated)."""
        code = parse_qs(urlsplit(product_callback).query)["code"][0]
        answer = self.client.post("/oauth2/token", auth=(self.product.client_id, self.product.client_secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": self.product.redirect_uri,
            **({"code_verifier": VERIFIER} if pkce else {})})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def get(self, url: str, *, cookie: str | bytes | None = None, **kwargs: Any) -> Any:
        return self.client.get(url, headers=_cookie_header(cookie), **kwargs)

    def post(self, url: str, *, cookie: str | bytes | None = None, **kwargs: Any) -> Any:
        return self.client.post(url, headers=_cookie_header(cookie), **kwargs)


def _cookie_header(cookie: str | bytes | None) -> dict[str, Any]:
    if cookie is None:
        return {}
    value = cookie if isinstance(cookie, bytes) else cookie.encode("utf-8", "surrogateescape")
    return {"cookie": f"{LOGIN_COOKIE}=".encode() + value}


def signed_response(spec: idp.ResponseSpec, signer: idp.Signer,
                    mutate: Callable[[etree._Element], None] | None = None) -> bytes:
    """The Response ``spec`` describes, its Assertion changed by ``mutate`` and then signed (with
    ``signer``, the pinned key): the signature covers whatever the mutation made."""
    response = idp.build_response(spec)
    assertion = response.find(f"{{{SAML}}}Assertion")
    assert assertion is not None
    if mutate is not None:
        mutate(assertion)
    idp.sign(assertion, signer)
    return idp.to_xml(response)


def set_times(**values: str) -> Callable[[etree._Element], None]:
    """A mutation setting the assertion's times: ``issue_instant``, ``not_before``,
    ``not_on_or_after`` (Conditions), ``confirmation_end``, ``authn_instant``, ``session_end``."""
    where = {
        "issue_instant": (".", "IssueInstant"),
        "not_before": (f"{{{SAML}}}Conditions", "NotBefore"),
        "not_on_or_after": (f"{{{SAML}}}Conditions", "NotOnOrAfter"),
        "confirmation_end": (f"{{{SAML}}}Subject/{{{SAML}}}SubjectConfirmation/{{{SAML}}}SubjectConfirmationData",
                             "NotOnOrAfter"),
        "authn_instant": (f"{{{SAML}}}AuthnStatement", "AuthnInstant"),
        "session_end": (f"{{{SAML}}}AuthnStatement", "SessionNotOnOrAfter"),
    }

    def mutate(assertion: etree._Element) -> None:
        for name, value in values.items():
            path, attribute = where[name]
            element = assertion if path == "." else assertion.find(path)
            assert element is not None, name
            element.set(attribute, value)

    return mutate


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def signin_app(data_dir: Path, database_dir: Path) -> Iterator[SigninApp]:
    keys = make_keys()
    with fresh_database(database_dir) as url:
        settings = make_settings(data_dir, url)
        runtime = Runtime.build(settings)
        runtime.database.migrate()
        app = create_app(settings, runtime)
        collector = _Collector()
        root = logging.getLogger()
        root.addHandler(collector)
        try:
            with HostileIdp() as hostile, TestClient(app, raise_server_exceptions=False,
                                                     follow_redirects=False) as client:
                kh = Keyhall(client, runtime)
                tenant = kh.tenant("Signin")
                owner = auth(tenant.owner)
                product_redirect = "https://app.signin.example/callback"
                app_body = _created(client.post("/v1/applications", headers=auth(kh.instance_token), json={
                    "name": f"Product {uuid.uuid4().hex[:6]}", "redirect_uris": [product_redirect]}))
                product = Product(str(app_body["client_id"]), str(app_body["client_secret"]), product_redirect)
                oidc = _created(client.post(f"/v1/organizations/{tenant.id}/connections", headers=owner, json={
                    "protocol": "oidc", "name": "signin-oidc", "oidc": {
                        "issuer": hostile.issuer, "client_id": hostile.client_id,
                        "client_secret": hostile.client_secret, "scope": "openid profile email"}}))
                hostile.allow_redirect_uri(oidc["redirect_uri"])
                saml = _created(client.post(f"/v1/organizations/{tenant.id}/connections", headers=owner, json={
                    "protocol": "saml", "name": "signin-saml", "saml": {
                        "idp_entity_id": idp.IDP_ENTITY_ID, "sso_url": SSO_URL, "certificates": [keys.rsa.cert_pem],
                        "allow_idp_initiated": True, "idp_initiated_client_id": product.client_id,
                        "idp_initiated_redirect_uri": product_redirect}}))
                collector.records.clear()  # only what the requests under test log counts
                yield SigninApp(client=client, keyhall=kh, idp=hostile, keys=keys, tenant=tenant, product=product,
                                oidc_id=str(oidc["id"]), saml_id=str(saml["id"]), saml=saml, collector=collector)
        finally:
            root.removeHandler(collector)
            runtime.database.dispose()
