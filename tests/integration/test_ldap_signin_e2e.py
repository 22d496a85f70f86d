"""End to end: a product (Authlib's OAuth 2.0 client) signs a person in through Keyhall's hosted LDAP
form, which checks the username and password at the organization's directory (the real OpenLDAP
``slapd`` of ``tests.support.slapd``), over real HTTP.

httpx plays the browser (one cookie jar per browser) and types into the form; the product redeems
the code. What slapd received is read from its log: a refused or rate-limited attempt that must not
reach the directory leaves no trace there.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import lxml.html
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from keyhall.core.vocabulary import Role
from keyhall.storage.models import AuditEventRow
from tests.support.api import auth
from tests.support.live import LiveKeyhall, TenantSetup
from tests.support.peers import free_port
from tests.support.slapd import Slapd, group_dn, user_dn

pytestmark = pytest.mark.peers

#: What the person reads for an unknown username and for a wrong password alike (keyhall.login.ldap).
BAD_CREDENTIALS = "That username and password do not match an account."
UNREACHABLE = "Keyhall could not reach your organization's directory."
REFUSED_HEADING = "We could not sign you in"
#: The per-username limit of the live server (``Runtime.password_limit``): 10 attempts per 300 s.
PASSWORD_LIMIT = 10


@dataclass
class LdapSetup(TenantSetup):
    """An organization with an LDAP connection to the test directory, and a product registered with Keyhall."""

    directory: Slapd

    @property
    def form_url(self) -> str:
        return f"{self.live.url}/sso/{self.cid}/ldap"


    def failure_reasons(self) -> list[str]:
        return sorted(e["changes"]["reason"] for e in self.audit("login.failed"))


def make_ldap_setup(live: LiveKeyhall, directory: Slapd, name: str, **ldap: Any) -> LdapSetup:
    """Organization, LDAP connection (saving it binds at the directory) and product, over the native API."""
    suffix = uuid.uuid4().hex[:8]
    domain = f"{name}-{suffix}.test".lower()
    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": f"{name} {suffix}"}, headers=auth(live.instance_token))
        assert org.status_code == 201, org.text
        org_data = org.json()
        owner = live.issue_key(org_data["id"], Role.OWNER)
        body = {"protocol": "ldap", "name": "directory", "display_name": "Example Directory", "domains": [domain],
                "ldap": {**directory.ldap_settings(**ldap), **directory.bind_secrets()}}
        created = api.post(f"/v1/organizations/{org_data['id']}/connections", json=body, headers=auth(owner))
        assert created.status_code == 201, created.text
        conn = created.json()
        assert conn["discovered"]["contacted"] is True
        assert conn["discovered"]["bind"] == "service_account"
        assert conn["ldap"]["bind_password_set"] is True
        assert directory.service_password not in created.text
        product_redirect = f"http://127.0.0.1:{free_port()}/product/callback"
        app = api.post("/v1/applications", json={"name": f"Product {suffix}", "redirect_uris": [product_redirect]},
                       headers=auth(live.instance_token))
        assert app.status_code == 201, app.text
    return LdapSetup(live=live, directory=directory, org=org_data, owner=owner, connection=conn, domain=domain,
                     client_id=app.json()["client_id"], client_secret=app.json()["client_secret"],
                     product_redirect=product_redirect)


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, slapd: Slapd) -> LdapSetup:
    return make_ldap_setup(live_keyhall, slapd, "Ldap")


def product_client(s: LdapSetup) -> OAuth2Client:
    return OAuth2Client(client_id=s.client_id, client_secret=s.client_secret,
                        scope="openid email profile groups offline_access", redirect_uri=s.product_redirect,
                        code_challenge_method="S256", trust_env=False, timeout=15)


def browser() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=15)


@dataclass
class Form:
    """The hosted LDAP form as the browser sees it."""

    action: str
    fields: dict[str, str]
    message: str | None
    html: str = field(repr=False)

    @classmethod
    def parse(cls, response: httpx.Response) -> Form:
        assert response.headers["content-type"].startswith("text/html")
        doc = lxml.html.fromstring(response.text)
        forms = elements(doc, "//form")
        assert len(forms) == 1, response.text
        form = forms[0]
        fields = {str(i.get("name")): str(i.get("value") or "") for i in elements(form, ".//input[@name]")}
        alerts = [" ".join(a.text_content().split()) for a in elements(doc, "//*[@role='alert']")]
        return cls(action=urljoin(str(response.url), str(form.get("action"))), fields=fields,
                   message=alerts[0] if alerts else None, html=response.text)

    def input_type(self, name: str) -> str:
        found = elements(lxml.html.fromstring(self.html), f"//form//input[@name='{name}']")
        assert len(found) == 1
        return str(found[0].get("type"))


def elements(root: lxml.html.HtmlElement, path: str) -> list[lxml.html.HtmlElement]:
    found = root.xpath(path)
    assert isinstance(found, list)
    return [e for e in found if isinstance(e, lxml.html.HtmlElement)]


@dataclass
class Started:
    form: Form
    verifier: str
    nonce: str
    state: str


def start(s: LdapSetup, client: httpx.Client, product: OAuth2Client, login: str = "alice") -> Started:
    """The product sends the browser to Keyhall with a login hint; Keyhall routes it to the LDAP form."""
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    url, state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier=verifier,
                                                  nonce=nonce, login_hint=f"{login}@{s.domain}")
    response = client.get(url)
    assert response.status_code == 303, response.text
    location = urljoin(s.live.url, response.headers["location"])
    assert location.startswith(f"{s.form_url}?tx="), location
    page = client.get(location)
    assert page.status_code == 200, page.text
    form = Form.parse(page)
    return Started(form=form, verifier=verifier, nonce=nonce, state=state)


def submit(client: httpx.Client, form: Form, username: str, password: str, **overrides: str) -> httpx.Response:
    data = {**form.fields, "username": username, "password": password, **overrides}
    return client.post(form.action, data=data)


def slapd_searches_for(directory: Slapd, uid_filter: str) -> int:
    """How many user searches with this (already escaped) filter slapd received."""
    return directory.log().lower().count(f'filter="{uid_filter.lower()}"')


def slapd_connections(directory: Slapd) -> int:
    return directory.log().count("ACCEPT from")


def slapd_binds_as(directory: Slapd, dn: str) -> int:
    return directory.log().count(f'BIND dn="{dn}" method=128')


def page_text(response: httpx.Response) -> str:
    """The page's text as a person reads it (entities decoded, white space collapsed)."""
    body = elements(lxml.html.document_fromstring(response.text), "//body")
    assert len(body) == 1
    return " ".join(body[0].text_content().split())


def audit_by_request(live: LiveKeyhall, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(action, changes) of one request's audit events, whichever organization (if any) they were filed under."""
    with live.runtime.database.unit_of_work() as uow:
        rows = uow.session.scalars(select(AuditEventRow).where(AuditEventRow.request_id == request_id)).all()
        return [(row.action, dict(row.changes)) for row in rows]


def verify_id_token(s: LdapSetup, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256"])
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": s.live.url},
                                     aud={"essential": True, "value": s.client_id})
    registry.validate(decoded.claims)
    return dict(decoded.claims)


# --- the whole sign-in ----------------------------------------------------------------------------


def test_alice_signs_in_through_the_directory(setup: LdapSetup, slapd: Slapd) -> None:
    s = setup
    assert s.get_connection()["is_verified"] is False
    discovery = httpx.get(f"{s.live.url}/.well-known/openid-configuration", trust_env=False).json()
    with browser() as client, product_client(s) as product:
        started = start(s, client, product)
        form = started.form
        assert form.action == s.form_url
        assert set(form.fields) == {"tx", "csrf", "username", "password"}
        assert form.fields["tx"]
        assert form.fields["csrf"]
        assert form.fields["username"] == form.fields["password"] == ""
        assert form.input_type("password") == "password"
        assert form.message is None
        assert "Example Directory" in form.html
        assert client.cookies.get("keyhall_login") == form.fields["tx"]

        binds = slapd_binds_as(slapd, user_dn("alice"))
        done = submit(client, form, "alice", slapd.passwords["alice"])
        assert done.status_code == 303, done.text
        assert slapd_binds_as(slapd, user_dn("alice")) == binds + 1  # the password is checked by alice's own bind
        callback = done.headers["location"]
        assert callback.startswith(f"{s.product_redirect}?")
        query = parse_qs(urlsplit(callback).query)
        assert query["state"] == [started.state]
        assert query["iss"] == [s.live.url]
        assert query["code"][0]
        token = product.fetch_token(discovery["token_endpoint"], authorization_response=callback,
                                    state=started.state, code_verifier=started.verifier)

        claims = verify_id_token(s, token["id_token"])
        assert claims["nonce"] == started.nonce
        assert claims["email"] == "alice@example.test"  # the directory's, not the login hint's
        # The organization's directory vouches only for addresses in the domains its connection routes.
        assert claims["email_verified"] is False
        assert claims["name"] == "Alice Archer"
        assert claims["given_name"] == "Alice"
        assert claims["family_name"] == "Archer"
        assert claims["preferred_username"] == "alice"
        assert sorted(claims["groups"]) == sorted([group_dn("admins"), group_dn("engineering")])  # memberOf
        assert claims["org_id"] == s.org["id"]
        assert claims["org_slug"] == s.org["slug"]
        assert claims["connection_id"] == s.cid
        assert claims["amr"] == ["pwd"]
        assert claims["sub"] != "alice"

        info = product.get(discovery["userinfo_endpoint"])
        assert info.status_code == 200, info.text
        userinfo = info.json()
        assert userinfo["sub"] == claims["sub"]
        assert userinfo["email"] == "alice@example.test"
        assert userinfo["name"] == "Alice Archer"
        assert sorted(userinfo["groups"]) == sorted(claims["groups"])
        assert userinfo["org_id"] == s.org["id"]

    assert s.get_connection()["is_verified"] is True
    succeeded = s.audit("login.succeeded")
    assert len(succeeded) == 1
    assert succeeded[0]["changes"]["connection_id"] == s.cid
    assert succeeded[0]["changes"]["client_id"] == s.client_id
    assert s.audit("login.failed") == []

    # The form, once used, has done its work: posting it again, login cookie and all, signs nobody in.
    with browser() as client:
        client.cookies.set("keyhall_login", form.fields["tx"])
        again = submit(client, form, "alice", slapd.passwords["alice"])
    assert again.status_code == 400, again.text
    assert "This sign-in has already finished" in page_text(again)
    assert "location" not in again.headers
    assert len(s.audit("login.succeeded")) == 1


# --- what a person gets wrong ---------------------------------------------------------------------


def test_a_wrong_password_shows_the_form_again_and_then_signs_in(setup: LdapSetup, slapd: Slapd) -> None:
    s = setup
    with browser() as client, product_client(s) as product:
        started = start(s, client, product)
        refused = submit(client, started.form, "alice", slapd.passwords["bob"])
        assert refused.status_code == 401
        again = Form.parse(refused)
        assert again.message == BAD_CREDENTIALS
        assert again.fields["username"] == "alice"  # kept for the next try
        assert again.fields["password"] == ""
        assert slapd.passwords["bob"] not in refused.text
        assert (again.fields["tx"], again.fields["csrf"]) == (started.form.fields["tx"], started.form.fields["csrf"])
        assert "location" not in refused.headers

        ok = submit(client, again, "alice", slapd.passwords["alice"])
        assert ok.status_code == 303, ok.text
        assert ok.headers["location"].startswith(s.product_redirect)
    failed = s.audit("login.failed")
    assert [e["changes"]["reason"] for e in failed] == ["invalid_credentials"]
    assert failed[0]["changes"]["method"] == "ldap"
    assert failed[0]["changes"]["connection_id"] == s.cid
    assert failed[0]["actor"] == "anonymous"
    assert slapd.passwords["bob"] not in str(failed)
    assert len(s.audit("login.succeeded")) == 1


def test_an_unknown_user_reads_like_a_wrong_password(setup: LdapSetup, slapd: Slapd) -> None:
    s = setup
    with browser() as client, product_client(s) as product:
        form = start(s, client, product).form
        wrong = submit(client, form, "alice", "not-alices-password")
        unknown = submit(client, form, "mallory", "not-alices-password")
    assert wrong.status_code == unknown.status_code == 401
    assert Form.parse(wrong).message == Form.parse(unknown).message == BAD_CREDENTIALS
    assert Form.parse(unknown).fields["username"] == "mallory"
    assert wrong.text.replace('value="alice"', 'value="mallory"') == unknown.text  # nothing else differs
    assert s.failure_reasons() == ["invalid_credentials", "user_not_found"]
    assert s.audit("login.succeeded") == []


@pytest.mark.parametrize(("username", "received"), [
    ("*", r"(uid=\2a)"),
    ("alice)(uid=*", r"(uid=alice\29\28uid=\2a)"),
    ("*)(|(objectClass=*", r"(uid=\2a\29\28|\28objectclass=\2a)"),
])
def test_filter_injection_never_signs_in(live_keyhall: LiveKeyhall, slapd: Slapd, username: str,
                                         received: str) -> None:
    s = make_ldap_setup(live_keyhall, slapd, "Injection")
    searches = slapd_searches_for(slapd, received)
    alice_binds = slapd_binds_as(slapd, user_dn("alice"))
    with browser() as client, product_client(s) as product:
        form = start(s, client, product).form
        response = submit(client, form, username, slapd.passwords["alice"])
    assert response.status_code == 401, response.text
    assert Form.parse(response).message == BAD_CREDENTIALS
    assert "location" not in response.headers
    # The username reached the directory escaped (RFC 4515 §3), and nobody's password was tried.
    assert slapd_searches_for(slapd, received) == searches + 1
    assert slapd_binds_as(slapd, user_dn("alice")) == alice_binds
    assert s.failure_reasons() == ["user_not_found"]
    assert s.audit("login.succeeded") == []


def test_an_empty_password_is_refused_without_contacting_the_directory(setup: LdapSetup, slapd: Slapd) -> None:
    # A DN with an empty password is an unauthenticated bind, which LDAP servers answer with
    # success (RFC 4513 §5.1.2): such a password must never reach the directory.
    s = setup
    with browser() as client, product_client(s) as product:
        form = start(s, client, product).form
        contacts = slapd_connections(slapd)
        empty = submit(client, form, "alice", "")
        assert empty.status_code == 400, empty.text
        assert "location" not in empty.headers
        blank = submit(client, form, "alice", "   ")
        assert blank.status_code == 400, blank.text
        again = Form.parse(blank)
        assert again.message == "Enter your password."
        assert again.fields["username"] == "alice"
        assert slapd_connections(slapd) == contacts
    assert "empty_password" in s.failure_reasons()
    assert s.audit("login.succeeded") == []


def test_an_empty_password_shows_the_form_again(setup: LdapSetup) -> None:
    s = setup
    with browser() as client, product_client(s) as product:
        form = start(s, client, product).form
        empty = submit(client, form, "alice", "")
    assert empty.status_code == 400
    assert empty.headers["content-type"].startswith("text/html"), empty.text
    assert Form.parse(empty).message == "Enter your password."


def test_a_bad_csrf_token_is_refused_without_contacting_the_directory(setup: LdapSetup, slapd: Slapd) -> None:
    s = setup
    with browser() as client, product_client(s) as product:
        form = start(s, client, product).form
        contacts = slapd_connections(slapd)
        forged = submit(client, form, "alice", slapd.passwords["alice"], csrf=secrets.token_urlsafe(24))
        assert forged.status_code == 403, forged.text
        assert REFUSED_HEADING in page_text(forged)
        assert "This form has expired" in page_text(forged)
        assert "location" not in forged.headers
        assert slapd_connections(slapd) == contacts
        # The real form still works: a forged post does not spend the sign-in.
        ok = submit(client, form, "alice", slapd.passwords["alice"])
        assert ok.status_code == 303, ok.text
    events = audit_by_request(s.live, forged.headers["x-request-id"])
    assert [(action, changes["reason"]) for action, changes in events] == [("login.failed", "csrf_invalid")]


def test_the_eleventh_attempt_for_one_username_is_rate_limited(setup: LdapSetup, slapd: Slapd) -> None:
    s = setup
    name = f"limit-{uuid.uuid4().hex[:10]}"  # a username no other test uses: its own counter
    with browser() as client, product_client(s) as product:
        form = start(s, client, product).form
        for _ in range(PASSWORD_LIMIT):
            response = submit(client, form, name, "some-password")
            assert response.status_code == 401, response.text
            assert Form.parse(response).message == BAD_CREDENTIALS
        assert slapd_searches_for(slapd, f"(uid={name})") == PASSWORD_LIMIT
        # The count is per username, whatever its case; the refused attempt never reaches the directory.
        limited = submit(client, form, name.upper(), "some-password")
        assert limited.status_code == 429, limited.text
        assert "Too many sign-in attempts" in limited.text
        assert slapd_searches_for(slapd, f"(uid={name})") == PASSWORD_LIMIT
        # Another username is still served.
        other = submit(client, form, "alice", slapd.passwords["alice"])
        assert other.status_code == 303, other.text
    assert s.failure_reasons() == ["user_not_found"] * PASSWORD_LIMIT


# --- a directory that is down ---------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to slapd while ``forwarding``; ``close()`` shuts the port (refused),
    ``stall()`` keeps accepting connections but never answers."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.forwarding = True
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _keep(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            self._keep(client)
            if not self.forwarding:
                continue  # held open, never answered
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            self._keep(upstream)
            self._spawn(self._pipe, client, upstream)
            self._spawn(self._pipe, upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with suppress(OSError):  # the other direction may have shut it already
                sock.shutdown(socket.SHUT_RDWR)

    def stall(self) -> None:
        self.forwarding = False

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)
        with self.lock:
            for sock in self.sockets:
                sock.close()


@pytest.fixture
def proxy(slapd: Slapd) -> Iterator[TcpProxy]:
    running = TcpProxy(slapd.port)
    try:
        yield running
    finally:
        running.close()


@pytest.mark.parametrize(("outage", "limit"), [("closed", 2.0), ("silent", 5.0)])
def test_a_directory_that_is_down_ends_on_a_clear_page_quickly(live_keyhall: LiveKeyhall, slapd: Slapd,
                                                               proxy: TcpProxy, outage: str, limit: float) -> None:
    # Saving the connection binds at the directory through the proxy; then the directory goes away.
    s = make_ldap_setup(live_keyhall, slapd, "Outage", port=proxy.port, timeout_seconds=1.0)
    if outage == "closed":
        proxy.close()
    else:
        proxy.stall()
    with browser() as client, product_client(s) as product:
        form = start(s, client, product).form
        started = time.monotonic()
        response = submit(client, form, "alice", slapd.passwords["alice"])
        elapsed = time.monotonic() - started
    assert elapsed < limit, elapsed
    assert response.status_code == 502, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert REFUSED_HEADING in page_text(response)
    assert UNREACHABLE in page_text(response)
    assert "location" not in response.headers
    assert slapd.passwords["alice"] not in response.text
    failed = s.audit("login.failed")
    assert [e["changes"]["reason"] for e in failed] == ["directory_unavailable"]
    detail = failed[0]["changes"]["detail"]
    expected = "connection refused" if outage == "closed" else "timed out"
    assert re.search(expected, detail, re.IGNORECASE), detail
    assert s.audit("login.succeeded") == []
    assert s.get_connection()["is_verified"] is False


# --- saving a connection checks the service account ----------------------------------------------


def test_a_wrong_bind_password_is_422_naming_the_ldap_result_and_stores_nothing(live_keyhall: LiveKeyhall,
                                                                                 slapd: Slapd) -> None:
    live = live_keyhall
    suffix = uuid.uuid4().hex[:8]
    domain = f"wrong-bind-{suffix}.test"
    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": f"Wrong Bind {suffix}"}, headers=auth(live.instance_token))
        assert org.status_code == 201, org.text
        org_id = org.json()["id"]
        owner = auth(live.issue_key(org_id, Role.OWNER))
        base = f"/v1/organizations/{org_id}/connections"
        wrong = "not-the-service-password"
        settings = {**slapd.ldap_settings(), "bind_password": wrong}
        body = {"protocol": "ldap", "name": "directory", "domains": [domain], "ldap": settings}
        response = api.post(base, json=body, headers=owner)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "ldap_check_failed"
        assert "invalidCredentials (49)" in error["message"]
        assert slapd.service_dn in error["message"]
        assert error["details"]["result_code"] == 49
        assert error["details"]["stage"] == "bind"
        assert wrong not in response.text

        assert api.get(base, headers=owner).json()["data"] == []
        assert api.get(f"/v1/organizations/{org_id}/domains", headers=owner).json()["data"] == []
        events = api.get(f"/v1/organizations/{org_id}/audit-events", params={"action": "connection.created"},
                         headers=owner).json()["data"]
        assert events == []

        # The same body with the right password is saved: only the password was wrong.
        settings["bind_password"] = slapd.service_password
        response = api.post(base, json=body, headers=owner)
        assert response.status_code == 201, response.text
        assert [c["id"] for c in api.get(base, headers=owner).json()["data"]] == [response.json()["id"]]
