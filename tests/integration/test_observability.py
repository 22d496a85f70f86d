"""Prometheus metrics: the protected ``/metrics`` endpoint, request counts by route template,
sign-ins and IdP calls (through a real sign-in at the real OIDC provider), bounded labels, one
registry per app, and the separate metrics port."""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from keyhall import metrics as metrics_core
from keyhall.api.observability import install_metrics, metrics_of, start_metrics_server
from keyhall.app import create_app
from keyhall.core.vocabulary import Role
from keyhall.errors import IdPLoginReason, IdTokenReason, SamlReason
from keyhall.idp.ldap_client import LdapLoginReason
from keyhall.metrics import LOGIN_REASONS, Metrics, idp_call, observe_idp_call, observe_login
from keyhall.runtime import Runtime
from tests.integration.test_oidc_signin_e2e import product_client, sign_in
from tests.support.api import Keyhall, auth, issue_key
from tests.support.database import fresh_database
from tests.support.live import LiveKeyhall, make_signin_setup
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port
from tests.support.scim import make_directory, user_body
from tests.support.settings import make_settings

SRC = Path(__file__).resolve().parents[2] / "src" / "keyhall"
TOKEN = "metrics-token-for-tests-0123456789"
Labels = dict[str, str]


def samples(text: str, name: str) -> list[tuple[Labels, float]]:
    """The samples called ``name`` in a Prometheus text exposition."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), sample.value))
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The one sample ``name`` whose labels include ``labels`` (0 when there is none)."""
    matching = [v for have, v in samples(text, name) if labels.items() <= have.items()]
    assert len(matching) <= 1, matching
    return matching[0] if matching else 0.0


@pytest.fixture(scope="module")
def metered(runtime: Runtime) -> Iterator[TestClient]:
    settings = runtime.settings.model_copy(update={"metrics_token": TOKEN})
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
        yield client


def scrape(client: TestClient) -> str:
    response = client.get("/metrics", headers=auth(TOKEN))
    assert response.status_code == 200, response.text
    return str(response.text)


def test_metrics_refuse_a_missing_or_wrong_token(metered: TestClient) -> None:
    for headers in ({}, auth("wrong"), auth(TOKEN + "x"), {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}):
        response = metered.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == "unauthenticated"
        assert "keyhall_" not in response.text


def test_metrics_serve_prometheus_text_with_the_token(metered: TestClient) -> None:
    response = metered.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})  # the scheme is case-blind
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert response.headers["cache-control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"keyhall_http_requests", "keyhall_http_request_duration_seconds", "keyhall_logins",
            "keyhall_idp_call_duration_seconds", "keyhall_idp_call_errors", "process_cpu_seconds"} <= names
    # Every IdP kind is there from the start, at zero, so an alert on its rate has a series.
    assert {labels["kind"] for labels, _v in samples(response.text, "keyhall_idp_call_errors_total")} == set(
        get_args(metrics_core.IdpCallKind))


def test_metrics_are_not_served_without_a_token(keyhall: Keyhall) -> None:
    assert keyhall.client.get("/metrics").status_code == 404
    assert keyhall.client.get("/metrics", headers=auth(TOKEN)).status_code == 404
    assert "/metrics" not in keyhall.client.get("/openapi.json").json()["paths"]


def test_requests_are_counted_by_route_template(metered: TestClient, keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Metered")
    route = "/v1/organizations/{org}/connections"
    before = scrape(metered)
    for _ in range(3):
        assert metered.get(f"/v1/organizations/{tenant.id}/connections", headers=auth(tenant.viewer)).status_code == 200
    assert metered.get(f"/v1/organizations/{tenant.slug}/connections", headers=auth("nope")).status_code == 401
    assert metered.get(f"/no/such/{tenant.id}").status_code == 404
    refused = metered.post(f"/v1/organizations/{tenant.id}/connections", content=b"x",
                           headers={**auth(tenant.owner), "content-type": "text/plain"})
    assert refused.status_code == 415  # refused by the body check, before routing
    after = scrape(metered)

    def delta(**labels: str) -> float:
        return value(after, "keyhall_http_requests_total", **labels) - value(before, "keyhall_http_requests_total",
                                                                            **labels)

    assert delta(method="GET", route=route, status="2xx") == 3
    assert delta(method="GET", route=route, status="4xx") == 1
    assert delta(method="GET", route="unmatched", status="4xx") == 1
    assert delta(method="POST", route="unmatched", status="4xx") == 1
    assert value(after, "keyhall_http_request_duration_seconds_count", method="GET", route=route, status="2xx") >= 3
    for labels, _v in samples(after, "keyhall_http_requests_total"):
        assert tenant.id not in labels["route"]
        assert tenant.slug not in labels["route"]


def test_a_refused_sign_in_is_counted_with_its_reason(metered: TestClient, keyhall: Keyhall) -> None:
    app = metered.post("/v1/applications", json={"name": "Metered product",
                                                 "redirect_uris": ["http://127.0.0.1:9/cb"]},
                       headers=auth(keyhall.instance_token))
    assert app.status_code == 201, app.text
    before = value(scrape(metered), "keyhall_logins_total", connection_id="none", outcome="failure",
                   reason="unknown_organization")
    page = metered.get("/oauth2/authorize", params={
        "client_id": app.json()["client_id"], "redirect_uri": "http://127.0.0.1:9/cb", "response_type": "code",
        "scope": "openid", "state": "s", "code_challenge": "x" * 43, "code_challenge_method": "S256",
        "organization": "no-such-organization"})
    assert page.status_code == 404, page.text
    after = value(scrape(metered), "keyhall_logins_total", connection_id="none", outcome="failure",
                  reason="unknown_organization")
    assert after == before + 1


def test_observe_login_and_idp_call_report_to_the_current_app(runtime: Runtime) -> None:
    # Outside a request, reports go to the most recently installed app's metrics.
    app = create_app(runtime.settings, runtime)
    metrics = metrics_of(app)
    observe_login("0b7a1c2e-0000-4000-8000-000000000001", True, "ok")
    observe_login("0b7a1c2e-0000-4000-8000-000000000001", False, "idp_error:access_denied")
    observe_login(None, False, "bad_credentials")
    observe_login(None, False, "a reason nobody declared")
    observe_idp_call("oidc_token", 0.2, True)
    observe_idp_call("dns", 0.01, False)
    with pytest.raises(RuntimeError), idp_call("oidc_jwks"):
        raise RuntimeError("the IdP is down")
    with idp_call("oidc_userinfo"):
        pass
    text = metrics.exposition().decode()
    cid = "0b7a1c2e-0000-4000-8000-000000000001"
    assert value(text, "keyhall_logins_total", connection_id=cid, outcome="success", reason="ok") == 1
    assert value(text, "keyhall_logins_total", connection_id=cid, outcome="failure", reason="idp_error") == 1
    assert value(text, "keyhall_logins_total", connection_id="none", outcome="failure", reason="bad_credentials") == 1
    assert value(text, "keyhall_logins_total", connection_id="none", outcome="failure", reason="other") == 1
    assert value(text, "keyhall_idp_call_duration_seconds_count", kind="oidc_token") == 1
    assert value(text, "keyhall_idp_call_duration_seconds_sum", kind="oidc_token") == pytest.approx(0.2)
    assert value(text, "keyhall_idp_call_errors_total", kind="oidc_token") == 0
    assert value(text, "keyhall_idp_call_errors_total", kind="dns") == 1
    assert value(text, "keyhall_idp_call_errors_total", kind="oidc_jwks") == 1
    assert value(text, "keyhall_idp_call_duration_seconds_count", kind="oidc_userinfo") == 1
    assert value(text, "keyhall_idp_call_errors_total", kind="oidc_userinfo") == 0


def test_labels_stay_bounded(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = metrics_of(create_app(runtime.settings, runtime))
    monkeypatch.setattr(metrics_core, "MAX_CONNECTION_LABELS", 2)
    for cid in ("conn-a", "conn-b", "conn-c", "conn-d", "x" * 65, "bad id {}", "conn-a"):
        observe_login(cid, True, "ok")
    observe_idp_call("carrier-pigeon", 1.0, False)  # type: ignore[arg-type]
    text = metrics.exposition().decode()
    seen = {labels["connection_id"]: v for labels, v in samples(text, "keyhall_logins_total")}
    assert seen == {"conn-a": 2, "conn-b": 1, "other": 4}
    assert value(text, "keyhall_idp_call_errors_total", kind="other") == 1


def test_every_declared_login_reason_is_a_label_of_its_own() -> None:
    """A new reason must be added to ``LOGIN_REASONS``, or it is counted as ``other``."""
    declared = {*get_args(IdPLoginReason), *get_args(IdTokenReason), *get_args(SamlReason),
                *get_args(LdapLoginReason)}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("LoginFailed", "LoginRefused"):
                declared.update(k.value.value for k in node.keywords
                                if k.arg == "reason" and isinstance(k.value, ast.Constant))
    assert declared - LOGIN_REASONS == set()


def test_each_app_has_its_own_registry(runtime: Runtime) -> None:
    first, second = (create_app(runtime.settings, runtime) for _ in range(2))
    with TestClient(first) as one, TestClient(second) as two:
        for _ in range(2):
            one.get("/healthz")
        two.get("/healthz")
    count = "keyhall_http_requests_total"
    labels = {"method": "GET", "route": "/healthz", "status": "2xx"}
    assert value(metrics_of(first).exposition().decode(), count, **labels) == 2
    assert value(metrics_of(second).exposition().decode(), count, **labels) == 1


def test_the_metrics_port_serves_the_app_registry(runtime: Runtime) -> None:
    app = FastAPI()
    metrics = install_metrics(app, token=None)
    observe_login(None, False, "csrf_invalid")
    port = free_port()
    server, thread = start_metrics_server(metrics, port)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=5)
        assert response.status_code == 200
        assert value(response.text, "keyhall_logins_total", reason="csrf_invalid") == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert isinstance(metrics, Metrics)


# --- a real sign-in, through a Keyhall server with metrics on -----------------------------------


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # in a thread: signals stay with pytest
        pass


@contextmanager
def serving(app: FastAPI, port: int) -> Iterator[None]:
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                    access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the metered Keyhall server did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class MeteredLive:
    live: LiveKeyhall
    app: FastAPI


@pytest.fixture(scope="module")
def metered_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeteredLive]:
    port = free_port()
    with fresh_database(tmp_path_factory.mktemp("metered-db")) as url:
        settings = make_settings(Path(tmp_path_factory.mktemp("metered-data")), url,
                                 public_url=f"http://127.0.0.1:{port}", allow_unverified_domains=True,
                                 metrics_token=TOKEN)
        runtime = Runtime.build(settings)
        runtime.database.migrate()
        app = create_app(settings, runtime)
        try:
            with serving(app, port):
                yield MeteredLive(LiveKeyhall(url=f"http://127.0.0.1:{port}", runtime=runtime,
                                              instance_token=issue_key(runtime, None, None)), app)
        finally:
            runtime.database.dispose()


def test_a_real_sign_in_counts_the_login_and_the_idp_calls(metered_live: MeteredLive, oidc_idp: OidcIdp) -> None:
    s = make_signin_setup(metered_live.live, oidc_idp, "Metered")
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        callback, verifier, _nonce = sign_in(s, browser, product)
        product.fetch_token(f"{s.live.url}/oauth2/token", authorization_response=callback, code_verifier=verifier)
    viewer = s.live.issue_key(s.org["id"], Role.VIEWER)
    text = httpx.get(f"{s.live.url}/metrics", headers=auth(TOKEN), trust_env=False).text
    cid = s.connection["id"]
    assert value(text, "keyhall_logins_total", connection_id=cid, outcome="success", reason="ok") == 1
    for kind in ("oidc_discovery", "oidc_token", "oidc_jwks"):
        assert value(text, "keyhall_idp_call_duration_seconds_count", kind=kind) >= 1, kind
        assert value(text, "keyhall_idp_call_errors_total", kind=kind) == 0, kind
    assert value(text, "keyhall_http_requests_total", method="GET", route="/sso/{connection_id}/oidc/callback",
                 status="3xx") == 1
    assert value(text, "keyhall_http_requests_total", method="POST", route="/oauth2/token", status="2xx") == 1
    assert cid not in {labels["route"] for labels, _v in samples(text, "keyhall_http_requests_total")}
    assert viewer not in text


def test_scim_requests_are_counted_by_route_template_under_the_mount(metered: TestClient, keyhall: Keyhall) -> None:
    directory = make_directory(keyhall, keyhall.tenant("Metered SCIM"))
    before = scrape(metered)
    created = metered.post(f"{directory.path}/Users", json=user_body("metered@x.local"), headers=directory.headers())
    assert created.status_code == 201, created.text
    assert metered.get(f"{directory.path}/Users/{created.json()['id']}", headers=directory.headers()).status_code == 200
    assert metered.get(f"{directory.path}/Users", headers=auth("wrong")).status_code == 401
    assert metered.get(f"{directory.path}/NoSuchType", headers=directory.headers()).status_code == 404
    after = scrape(metered)

    def delta(**labels: str) -> float:
        return value(after, "keyhall_http_requests_total", **labels) - value(before, "keyhall_http_requests_total",
                                                                            **labels)

    assert delta(method="POST", route="/scim/v2/{directory_id}/Users", status="2xx") == 1
    assert delta(method="GET", route="/scim/v2/{directory_id}/Users/{resource_id}", status="2xx") == 1
    assert delta(method="GET", route="/scim/v2/{directory_id}/Users", status="4xx") == 1
    assert delta(method="GET", route="unmatched", status="4xx") == 1
    for labels, _v in samples(after, "keyhall_http_requests_total"):
        assert directory.id not in labels["route"]
