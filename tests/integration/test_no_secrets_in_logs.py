"""No secret reaches a log line: every record the real Keyhall server writes during a whole run
(set-up through the API, an OIDC sign-in at the real IdP, token exchange, UserInfo, refresh, failed
attempts, password sign-ins, API key creation) is rendered in full — message, arguments, extra
fields, exception and stack — and searched for every secret that went by, and for any JWT.

Logging is opened as wide as an operator would: the root logger at DEBUG (so Keyhall's loggers,
httpx's and httpcore's write everything), uvicorn's loggers at DEBUG with the capturing handler
on those that write without propagating. Two switches stay as Keyhall ships them, and the test
checks both:

- uvicorn's access log is off (``access_log=False`` in ``keyhall serve`` and the live server: no
  handler, no propagation), because a request line carries the query string, where IdPs put
  authorization codes. (pytest itself turns it on while a test runs, by hanging its capture
  handlers on every non-propagating logger: those records go to pytest, not here.)
- SQLAlchemy's loggers keep the WARNING level SQLAlchemy gives them, because its INFO and DEBUG
  lines are statements with their parameters and result rows: login transactions hold Keyhall's
  own PKCE verifier toward the IdP.

Records written by the test's own clients (the product, the browser, the IdP script: all in the
main thread) are theirs, not Keyhall's, and are left out; Keyhall serves from its server thread
and worker threads.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from keyhall.core.vocabulary import Role
from keyhall.login.records import OidcTrip
from keyhall.logs import JsonFormatter
from tests.support.api import auth
from tests.support.live import LiveKeyhall
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")  # any JWS: ID and access tokens, both sides
_PLAIN = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
_JSON = JsonFormatter()


@dataclass
class Captured:
    text: str
    logger: str
    thread: str
    main_thread: bool


class CaptureEverything(logging.Handler):
    """Render each record in full when it is emitted (its arguments may change later)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[Captured] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        parts = [repr(record.msg), repr(record.args), repr(vars(record))]
        for formatter in (_PLAIN, _JSON):
            try:
                parts.append(formatter.format(record))
            except Exception:  # a record that cannot be formatted is still searched, raw
                parts.append(traceback.format_exc())
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(record.exc_info[1])))
        if record.stack_info:
            parts.append(record.stack_info)
        captured = Captured("\n".join(parts), record.name, record.threadName or "",
                            record.thread == threading.main_thread().ident)
        with self._lock_records:
            self.records.append(captured)


@pytest.fixture
def captured_logs(live_keyhall: LiveKeyhall) -> Iterator[CaptureEverything]:  # after the server configured logging
    handler = CaptureEverything()
    root = logging.getLogger()

    def own_handlers(logger: logging.Logger) -> list[logging.Handler]:
        # pytest (9+) hangs its capture handlers, the root's, on every non-propagating logger too.
        return [h for h in logger.handlers if h not in root.handlers]

    access = logging.getLogger("uvicorn.access")
    assert not own_handlers(access), "uvicorn's access log is on: request lines would log authorization codes"
    assert not access.propagate, "uvicorn's access log is on: request lines would log authorization codes"
    assert not logging.getLogger("sqlalchemy.engine.Engine").isEnabledFor(logging.INFO), "SQL parameters are logged"
    loggers = [root, *(logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"))]
    saved = {id(lg): lg.level for lg in loggers}
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        if lg is root or (own_handlers(lg) and not lg.propagate):
            lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
            lg.setLevel(saved[id(lg)])


@dataclass
class Secrets:
    values: dict[str, str] = field(default_factory=dict)

    def add(self, what: str, value: Any) -> None:
        assert isinstance(value, str), (what, value)
        assert len(value) >= 8, what  # shorter values would match by chance
        self.values[what] = value

    def variants(self) -> Iterator[tuple[str, str]]:
        """Each secret as it was, and as it would look inside a URL or a form."""
        for what, value in self.values.items():
            for shown in {value, quote(value, safe=""), quote_plus(value, safe="")}:
                yield what, shown


def _query(url: str, name: str) -> str:
    return parse_qs(urlsplit(url).query)[name][0]


def _form_fields(html: str) -> dict[str, str]:
    return {name: html.split(f'name="{name}" value="')[1].split('"')[0] for name in ("tx", "csrf")}


def test_no_secret_in_any_log_line(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp,
                                   captured_logs: CaptureEverything) -> None:
    live, found = live_keyhall, Secrets()
    found.add("instance API key token", live.instance_token)
    found.add("encryption keys", live.runtime.settings.secret_keys)
    suffix = secrets.token_hex(4)
    domain = f"logs-{suffix}.test"

    with live.api() as api:
        # Set-up through the API: an organization, keys, a connection with a client secret, a product.
        org = api.post("/v1/organizations", json={"name": f"Logs {suffix}"}, headers=auth(live.instance_token))
        assert org.status_code == 201, org.text
        org_id = org.json()["id"]
        owner = live.issue_key(org_id, Role.OWNER)
        found.add("owner API key token", owner)
        key = api.post(f"/v1/organizations/{org_id}/keys", json={"role": "admin", "name": "ci"},
                       headers=auth(owner))
        assert key.status_code == 201, key.text
        found.add("API key secret", key.json()["secret"])
        found.add("API key token", key.json()["token"])
        assert api.get(f"/v1/organizations/{org_id}", headers=auth(key.json()["token"])).status_code == 200
        conn = api.post(f"/v1/organizations/{org_id}/connections", headers=auth(owner), json={
            "protocol": "oidc", "name": "corp", "domains": [domain],
            "oidc": {"issuer": oidc_idp.issuer, "client_id": "pending", "scope": "openid profile email groups"}})
        assert conn.status_code == 201, conn.text
        cid = conn.json()["id"]
        idp_client_id, idp_secret = oidc_idp.register_client([conn.json()["redirect_uri"]])
        assert idp_secret is not None
        found.add("connection client secret", idp_secret)
        patched = api.patch(f"/v1/organizations/{org_id}/connections/{cid}", headers=auth(owner),
                            json={"oidc": {"client_id": idp_client_id, "client_secret": idp_secret}})
        assert patched.status_code == 200, patched.text
        product_redirect = f"http://127.0.0.1:{free_port()}/product/callback"
        app = api.post("/v1/applications", json={"name": f"Logs product {suffix}",
                                                 "redirect_uris": [product_redirect]},
                       headers=auth(live.instance_token))
        assert app.status_code == 201, app.text
        client_id, client_secret = app.json()["client_id"], app.json()["client_secret"]
        found.add("product client secret", client_secret)
        password, wrong_password = f"correct horse {suffix} staple", f"wrong horse {suffix} staple"
        found.add("user password", password)
        found.add("wrong password", wrong_password)
        email = f"carol-{suffix}@example.com"
        made = api.post(f"/v1/organizations/{org_id}/users", json={"email": email, "password": password},
                        headers=auth(owner))
        assert made.status_code == 201, made.text

    token_url, userinfo_url = f"{live.url}/oauth2/token", f"{live.url}/oauth2/userinfo"

    def product() -> OAuth2Client:
        return OAuth2Client(client_id=client_id, client_secret=client_secret, redirect_uri=product_redirect,
                            scope="openid email profile groups offline_access", code_challenge_method="S256",
                            trust_env=False, timeout=15)

    def sso_sign_in(browser: httpx.Client, client: OAuth2Client) -> tuple[str, str]:
        """Through the IdP up to the product's callback; returns (Keyhall's code, the verifier)."""
        verifier = secrets.token_urlsafe(48)
        found.add(f"PKCE verifier {len(found.values)}", verifier)
        url, _state = client.create_authorization_url(f"{live.url}/oauth2/authorize", code_verifier=verifier,
                                                      nonce=secrets.token_urlsafe(16), login_hint=f"alice@{domain}")
        to_idp = browser.get(url)
        assert to_idp.status_code == 303, to_idp.text
        with live.runtime.database.unit_of_work() as uow:  # Keyhall's own PKCE toward the IdP, kept server-side
            trip = uow.transactions.get(_query(to_idp.headers["location"], "state"))
        assert trip is not None
        found.add(f"Keyhall's PKCE verifier toward the IdP {len(found.values)}", OidcTrip.of(trip).verifier)
        keyhall_callback = oidc_idp.scripted_login(to_idp.headers["location"], "alice")
        found.add(f"IdP authorization code {len(found.values)}", _query(keyhall_callback, "code"))
        back = browser.get(keyhall_callback)
        assert back.status_code == 303, back.text
        code = _query(back.headers["location"], "code")
        found.add(f"authorization code {len(found.values)}", code)
        return code, verifier

    with httpx.Client(trust_env=False, timeout=15) as browser, product() as client:
        # A complete sign-in, with token exchange, UserInfo and refresh (twice: the second rotates).
        code, verifier = sso_sign_in(browser, client)
        tokens = client.fetch_token(token_url, grant_type="authorization_code", code=code, code_verifier=verifier)
        for name in ("access_token", "id_token", "refresh_token"):
            found.add(name, tokens[name])
        assert client.get(userinfo_url).status_code == 200
        refreshed = client.refresh_token(token_url, refresh_token=tokens["refresh_token"])
        for name in ("access_token", "id_token", "refresh_token"):
            found.add(f"refreshed {name}", refreshed[name])
        # Failures carry secrets too: a wrong verifier, a replayed code, a wrong client secret,
        # a reused (revoked) refresh token, a forged access token at UserInfo.
        code, verifier = sso_sign_in(browser, client)
        basic = (client_id, client_secret)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": product_redirect}
        wrong_verifier = secrets.token_urlsafe(48)
        found.add("wrong PKCE verifier", wrong_verifier)
        wrong_secret = secrets.token_urlsafe(24)
        found.add("wrong client secret", wrong_secret)
        assert httpx.post(token_url, data={**form, "code_verifier": wrong_verifier}, auth=basic,
                          trust_env=False).status_code == 400
        assert httpx.post(token_url, data={**form, "code_verifier": verifier}, auth=basic,
                          trust_env=False).status_code == 400
        assert httpx.post(token_url, data={**form, "code_verifier": verifier}, auth=(client_id, wrong_secret),
                          trust_env=False).status_code == 401
        assert httpx.post(token_url, data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                          auth=basic, trust_env=False).status_code == 400
        forged = tokens["access_token"][:-6] + "AAAAAA"
        assert httpx.get(userinfo_url, headers=auth(forged), trust_env=False).status_code == 401

    # Password sign-ins on the login page: a wrong password, then the right one.
    def password_attempt(secret: str) -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=15) as browser, product() as client:
            url, _state = client.create_authorization_url(f"{live.url}/oauth2/authorize",
                                                          code_verifier=secrets.token_urlsafe(48),
                                                          organization=org_id)
            assert browser.get(url).status_code == 303  # straight to the organization's one connection
            page = browser.get(f"{live.url}/login/password")
            return browser.post(f"{live.url}/login/password",
                                data={**_form_fields(page.text), "email": email, "password": secret})

    assert password_attempt(wrong_password).status_code == 401
    signed_in = password_attempt(password)
    assert signed_in.status_code == 303, signed_in.text
    found.add("password sign-in authorization code", _query(signed_in.headers["location"], "code"))

    # The capture worked: Keyhall's own outbound calls to the IdP were logged, from its threads.
    server_records = [r for r in captured_logs.records if not r.main_thread]
    assert any(r.logger.startswith(("httpx", "keyhall.security.outbound")) and "/token" in r.text
               for r in server_records), (
        "no record of Keyhall's call to the IdP's token endpoint was captured")

    leaks = []
    for record in server_records:
        for what, shown in found.variants():
            if shown in record.text:
                leaks.append(f"{what} in a record of {record.logger} [{record.thread}]:\n{record.text[:2000]}")
        if JWT.search(record.text):
            leaks.append(f"a JWT in a record of {record.logger} [{record.thread}]:\n{record.text[:2000]}")
    assert leaks == [], f"{len(leaks)} leaks; the first:\n{leaks[0]}"
