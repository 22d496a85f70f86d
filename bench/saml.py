"""SAML benchmark: Response validations per second, then complete SAML logins per second through a
real Keyhall and a real SAML IdP, all on 127.0.0.1.

One command::

    .venv/bin/python -m bench.saml
    .venv/bin/python -m bench.saml --logins 200 --concurrency 4
    .venv/bin/python -m bench.saml --database-url postgresql://postgres@127.0.0.1:5432/postgres

Part (a), ``validate``: :func:`keyhall.protocols.saml.response.parse_saml_response` on signed
responses of the test corpus (``tests/fixtures/saml/responses``, RSA-2048 / RSA-SHA256, about 5-8 KB
of XML, judged at the corpus's fixed ``now`` with its pinned certificates and SP key), in this
process, one thread: base64, hardened parse, layout checks, signature verification (and decryption
for the encrypted case), conditions. Each case runs ``--validations`` times or for
``--validate-seconds``, whichever ends first, after a short warm-up.

Part (b), ``login``: starts the npm ``saml-idp`` (``tests/peers/saml_idp``, after ``npm ci`` there)
with a fresh RSA-2048 certificate, and a Keyhall server (``python -m keyhall serve`` in its own
process) on a fresh database (SQLite in a temporary directory, or a PostgreSQL database created on
the server named by ``--database-url`` and dropped afterwards); makes, over the HTTP API, an
organization, a SAML connection to the IdP (its metadata URL, plus its certificate pinned) and a
product application; then drives complete SP-initiated sign-ins, each as a fresh browser:

1. ``authorize``: the product sends the browser to Keyhall ``/oauth2/authorize`` with a
   ``login_hint``; Keyhall routes by email domain, stores the trip, answers 303 to the IdP with an
   AuthnRequest (HTTP-Redirect).
2. ``idp``: the browser at the IdP: GET the SSO URL (the IdP parses the AuthnRequest and shows its
   form), POST ``/signin``, read the auto-post form. This is the IdP's cost, not Keyhall's.
3. ``acs``: the form posted to Keyhall's ACS: Response validation, replay cache, provisioning,
   hand-off; 303 to the completion step.
4. ``complete``: Keyhall's ``/sso/{id}/saml/complete``: login-cookie check, authorization code;
   303 to the product.
5. ``token``: the product redeems the code at ``/oauth2/token`` (client_secret_basic, PKCE); the
   ID token must name the person who signed in (saml-idp keeps one global user; a mix-up would show).

Warm-up logins run first and are not counted. The run stops after ``--logins`` measured logins or
when ``--max-seconds`` have passed (warm-up included). Rate limits are off on the server
(``KEYHALL_API_RATE_LIMIT_PER_MINUTE=0``). Processes are ended by their PID and temporary files
(and the PostgreSQL database) removed on exit, also on Ctrl-C or SIGTERM.

The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import platform
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from bench.login import (
    STARTUP_TIMEOUT,
    BenchError,
    Child,
    LoginError,
    Phase,
    b64url,
    expect_status,
    free_port,
    fresh_database,
    jwt_claims,
    percentile,
    start_instance,
    step_line,
    step_stats,
    stop_on_sigterm,
    warm_then_measure,
)

REPO = Path(__file__).resolve().parents[1]
IDP_DIR = REPO / "tests" / "peers" / "saml_idp"
IDP_RUN = Path("node_modules") / "saml-idp" / "bin" / "run.js"
CORPUS = REPO / "tests" / "fixtures" / "saml" / "responses"
REQUEST_TIMEOUT = 15.0  # seconds, for each HTTP request the benchmark makes
IDP_ENTITY_ID = "urn:keyhall-bench:idp"
SP_ENTITY_ID = "urn:keyhall-bench:sp"
PLACEHOLDER_ACS = "http://127.0.0.1:9/unused-acs"  # saml-idp answers the AuthnRequest's ACS URL instead
#: What saml-idp sends: firstName, lastName, displayName, email, groups (multi-valued).
ATTRIBUTE_MAPPINGS = {"email": "email", "given_name": "firstName", "family_name": "lastName",
                      "name": "displayName", "groups": "groups"}

#: (label, corpus file, expectation overrides)
VALIDATION_CASES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("both-signed", "good-both-signed.xml", {}),
    ("assertion-signed", "good-assertion-signed.xml", {}),
    ("response-signed", "good-response-signed.xml", {}),
    ("encrypted-gcm", "good-encrypted-aes256-gcm-assertion-signed.xml", {}),
    ("refused-xsw", "wrap-cloned-assertion.xml", {}),
)
HEADLINE_CASE = "both-signed"

STEPS: tuple[tuple[str, str], ...] = (
    ("authorize", "Keyhall /oauth2/authorize -> 303 to the IdP with an AuthnRequest"),
    ("idp", "IdP: SSO page + /signin -> auto-post form, not Keyhall"),
    ("acs", "Keyhall ACS: Response validation, replay cache, provisioning"),
    ("complete", "Keyhall completion step: cookie check, authorization code"),
    ("token", "Keyhall /oauth2/token (code -> tokens)"),
    ("keyhall", "Keyhall's own share (authorize + acs + complete + token)"),
    ("login", "whole login as the browser and product see it"),
)


# --- (a) validations -----------------------------------------------------------------------------


@dataclass
class ValidationResult:
    label: str
    file: str
    xml_bytes: int
    count: int
    seconds: float
    per_call_us: list[float]
    outcome: str  # "pass" or the refusal reason

    def summary(self) -> dict[str, Any]:
        return {"file": self.file, "xml_bytes": self.xml_bytes, "validations": self.count,
                "seconds": round(self.seconds, 3), "outcome": self.outcome,
                "per_second": round(self.count / self.seconds, 1) if self.seconds else None,
                "p50_us": round(percentile(self.per_call_us, 50), 1),
                "p95_us": round(percentile(self.per_call_us, 95), 1)}


def corpus_expectations(**overrides: Any) -> Any:
    """The corpus manifest's expectations (fixed ``now``, both pinned certificates, the SP key)."""
    from keyhall.protocols.saml.response import SamlExpectations

    base = {**json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["expectations"], **overrides}
    return SamlExpectations(
        acs_url=base["acs_url"], sp_entity_id=base["sp_entity_id"], idp_entity_id=base["idp_entity_id"],
        certificates=[(CORPUS / name).read_text(encoding="ascii") for name in base["certificates"]],
        request_id=base["request_id"], now=datetime.fromisoformat(base["now"].replace("Z", "+00:00")),
        sp_private_key=(CORPUS / base["sp_private_key"]).read_text(encoding="ascii"),
    )


def validate_case(label: str, file: str, overrides: dict[str, Any], *, count: int, seconds: float,
                  warmup: int = 20) -> ValidationResult:
    from keyhall.errors import SamlResponseError
    from keyhall.protocols.saml.response import parse_saml_response

    xml = (CORPUS / file).read_bytes()
    form_value = base64.b64encode(xml).decode("ascii")
    expect = corpus_expectations(**overrides)

    def once() -> str:
        try:
            parse_saml_response(form_value, expect)
        except SamlResponseError as exc:
            return str(exc.reason)
        return "pass"

    outcome = once()
    for _ in range(warmup):
        once()
    samples: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    while len(samples) < count:
        mark = time.perf_counter()
        if once() != outcome:
            raise BenchError(f"{file}: the outcome changed between runs")
        end = time.perf_counter()
        samples.append((end - mark) * 1e6)
        if end >= deadline:
            break
    return ValidationResult(label=label, file=file, xml_bytes=len(xml), count=len(samples),
                            seconds=time.perf_counter() - started, per_call_us=samples, outcome=outcome)


# --- (b) logins: processes -----------------------------------------------------------------------


def make_idp_certificate() -> tuple[str, str]:
    """A self-signed RSA-2048 / SHA-256 certificate and key for the IdP."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyhall-bench-idp")])
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + timedelta(days=30)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode("ascii"))


def start_idp(workdir: Path) -> tuple[Child, str, str]:
    """saml-idp on a free port; returns it, its base URL and its certificate (PEM)."""
    node = shutil.which("node")
    if node is None:
        raise BenchError("`node` is not installed (Debian package nodejs; `make system-deps`)")
    if not (IDP_DIR / IDP_RUN).is_file():
        raise BenchError(f"saml-idp is not installed: run `make peers` (npm ci in {IDP_DIR})")
    cert_pem, key_pem = make_idp_certificate()
    (workdir / "idp.crt").write_text(cert_pem, encoding="ascii")
    (workdir / "idp.key").write_text(key_pem, encoding="ascii")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [node, str(IDP_RUN), "--host", "127.0.0.1", "--port", str(port),
               "--cert", str(workdir / "idp.crt"), "--key", str(workdir / "idp.key"),
               "--issuer", IDP_ENTITY_ID, "--acsUrl", PLACEHOLDER_ACS, "--audience", SP_ENTITY_ID]
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")}  # they override --host/--port
    child = Child.start("saml-idp", command, cwd=IDP_DIR, env=env, log_path=workdir / "idp.log")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while True:
            child.check_alive()
            try:
                if client.get(f"{base}/metadata").status_code == 200:
                    return child, base, cert_pem
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"saml-idp was not ready within {STARTUP_TIMEOUT:g} s:\n{child.log()[-3000:]}")
            time.sleep(0.05)


# --- (b) logins: set-up over HTTP ----------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    keyhall_url: str
    idp_url: str
    connection_id: str
    domain: str
    client_id: str
    client_secret: str
    redirect_uri: str

    @property
    def acs_url(self) -> str:
        return f"{self.keyhall_url}/sso/{self.connection_id}/saml/acs"


def make_setup(keyhall_url: str, idp_url: str, idp_cert: str, instance_token: str, domain: str,
               pin_certificate: bool) -> Setup:
    headers = {"Authorization": f"Bearer {instance_token}"}
    with httpx.Client(base_url=keyhall_url, headers=headers, trust_env=False, timeout=REQUEST_TIMEOUT) as api:
        org = expect_status(api.post("/v1/organizations", json={"name": f"Bench {domain}"}), 201, "create organization")
        saml: dict[str, Any] = {"metadata_url": f"{idp_url}/metadata", "sp_entity_id": SP_ENTITY_ID}
        if pin_certificate:
            # Needed today: the certificates found in the metadata are not used at sign-in
            # (src/keyhall/login/saml.py `_idp` looks for a "pem" the discovered block lacks).
            saml["certificates"] = [idp_cert]
        body = {"protocol": "saml", "name": "bench-saml", "domains": [domain], "saml": saml,
                "attribute_mappings": ATTRIBUTE_MAPPINGS}
        connections = f"/v1/organizations/{org['id']}/connections"
        conn = expect_status(api.post(connections, json=body), 201, "create connection")
        redirect_uri = f"http://127.0.0.1:{free_port()}/product/callback"  # never requested
        app = expect_status(api.post("/v1/applications", json={"name": f"Bench product {domain}",
                                                         "redirect_uris": [redirect_uri]}), 201, "create application")
    return Setup(keyhall_url=keyhall_url, idp_url=idp_url, connection_id=str(conn["id"]), domain=domain,
                 client_id=str(app["client_id"]), client_secret=str(app["client_secret"]), redirect_uri=redirect_uri)


# --- (b) logins: one simulated browser -----------------------------------------------------------


class _Forms(HTMLParser):
    """Every form's action and every named input's value (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.actions: list[str] = []
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.actions.append(values.get("action") or "")
        elif tag == "input" and values.get("name"):
            self.inputs[str(values["name"])] = values.get("value") or ""


def read_forms(page: str) -> _Forms:
    forms = _Forms()
    forms.feed(page)
    forms.close()
    return forms


_ALERT = re.compile(r'role="alert">([^<]*)<')


def _shown(response: httpx.Response) -> str:
    """A Keyhall error page's message (with its reference), or the start of the body."""
    found = _ALERT.search(response.text)
    if found is None:
        return response.text[:300]
    return f"{html.unescape(found.group(1))} (x-request-id {response.headers.get('x-request-id')})"


class Browser:
    """One person's browser (its own cookie jar), a separate client for the IdP, and the product's back channel."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self.http = httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT, follow_redirects=False)
        self.idp = httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT, follow_redirects=False)
        self.product = httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT,
                                    auth=(setup.client_id, setup.client_secret))

    def close(self) -> None:
        self.http.close()
        self.idp.close()
        self.product.close()

    def login(self, user: str) -> dict[str, float]:
        """One whole SP-initiated sign-in as a fresh visitor; returns each step's seconds."""
        s, timings = self.setup, {}
        email = f"{user}@{s.domain}"
        self.http.cookies.clear()
        verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode({"response_type": "code", "client_id": s.client_id, "redirect_uri": s.redirect_uri,
                           "scope": "openid email profile groups", "state": state, "nonce": nonce,
                           "login_hint": email, "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
                           "code_challenge_method": "S256"})

        started = time.perf_counter()
        response = self.http.get(f"{s.keyhall_url}/oauth2/authorize?{query}")
        timings["authorize"] = time.perf_counter() - started
        idp_url = response.headers.get("location", "")
        if response.status_code != 303 or not idp_url.startswith(f"{s.idp_url}/saml/sso?"):
            raise LoginError("authorize", f"HTTP {response.status_code} to {idp_url!r}: {_shown(response)}")

        mark = time.perf_counter()
        action, form = self._at_idp(idp_url, email, user)
        timings["idp"] = time.perf_counter() - mark
        if action != s.acs_url:
            raise LoginError("idp", f"the IdP posts to {action!r}, not to Keyhall's ACS")

        mark = time.perf_counter()
        response = self.http.post(action, data=form)
        timings["acs"] = time.perf_counter() - mark
        step_url = response.headers.get("location", "")
        if response.status_code != 303 or not step_url.startswith(f"/sso/{s.connection_id}/saml/complete?"):
            raise LoginError("acs", f"HTTP {response.status_code} to {step_url!r}: {_shown(response)}")

        mark = time.perf_counter()
        response = self.http.get(urljoin(s.acs_url, step_url))
        timings["complete"] = time.perf_counter() - mark
        product_url = response.headers.get("location", "")
        if response.status_code != 303 or not product_url.startswith(s.redirect_uri):
            raise LoginError("complete", f"HTTP {response.status_code} to {product_url!r}: {_shown(response)}")
        params = parse_qs(urlsplit(product_url).query)
        if params.get("state") != [state] or "code" not in params:
            raise LoginError("complete", f"unexpected redirect to the product: {product_url}")

        mark = time.perf_counter()
        response = self.product.post(f"{s.keyhall_url}/oauth2/token", data={
            "grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": s.redirect_uri,
            "code_verifier": verifier})
        ended = time.perf_counter()
        timings["token"] = ended - mark
        if response.status_code != 200:
            raise LoginError("token", f"HTTP {response.status_code}: {_shown(response)}")
        claims = jwt_claims(str(response.json().get("id_token", "..")))
        if claims.get("nonce") != nonce or claims.get("email") != email:
            raise LoginError("token", f"ID token does not answer this login ({email}): {claims}")

        timings["keyhall"] = timings["authorize"] + timings["acs"] + timings["complete"] + timings["token"]
        timings["login"] = ended - started
        return timings

    def _at_idp(self, sso_url: str, email: str, user: str) -> tuple[str, dict[str, str]]:
        """GET the SSO page, POST /signin with every attribute; the auto-post form's action and fields."""
        page = self.idp.get(sso_url)
        authn_request = read_forms(page.text).inputs.get("_authnRequest") if page.status_code == 200 else None
        if not authn_request:
            raise LoginError("idp", f"the IdP did not take the AuthnRequest: HTTP {page.status_code} {page.text[:300]}")
        answer = self.idp.post(f"{self.setup.idp_url}/signin", data={
            "_authnRequest": authn_request, "userName": email, "email": email, "firstName": "Bench",
            "lastName": user, "displayName": f"Bench {user}", "groups": "engineering,bench"})
        forms = read_forms(answer.text)
        if answer.status_code != 200 or len(forms.actions) != 1 or "SAMLResponse" not in forms.inputs:
            raise LoginError("idp", f"no auto-post form: HTTP {answer.status_code} {answer.text[:300]}")
        fields = {"SAMLResponse": forms.inputs["SAMLResponse"]}
        if forms.inputs.get("RelayState"):
            fields["RelayState"] = forms.inputs["RelayState"]
        return forms.actions[0], fields


# --- (b) logins: driving -------------------------------------------------------------------------


def report_validations(results: list[ValidationResult], out: Callable[[str], None]) -> dict[str, Any]:
    out("")
    out(f"(a) parse_saml_response, one thread, fixed now (corpus {CORPUS.relative_to(REPO)}), "
        f"Python {platform.python_version()}")
    out("")
    out(f"{'case':<18} {'XML B':>6} {'outcome':<20} {'n':>6} {'per s':>8} {'p50 us':>8} {'p95 us':>8}  file")
    out(f"{'-' * 18} {'-' * 6} {'-' * 20} {'-' * 6} {'-' * 8} {'-' * 8} {'-' * 8}  {'-' * 40}")
    summary: dict[str, Any] = {}
    for result in results:
        row = summary[result.label] = result.summary()
        out(f"{result.label:<18} {result.xml_bytes:>6} {result.outcome:<20} {result.count:>6} "
            f"{row['per_second']:>8.1f} {row['p50_us']:>8.1f} {row['p95_us']:>8.1f}  {result.file}")
    return summary


def report_logins(args: argparse.Namespace, database: str, warmup: Phase, measured: Phase,
                  out: Callable[[str], None]) -> dict[str, Any]:
    stats = step_stats(measured.samples, STEPS)
    done = len(measured.samples)
    rate = done / measured.seconds if measured.seconds > 0 else 0.0
    summary: dict[str, Any] = {
        "logins": done, "requested": args.logins, "errors": len(measured.errors), "warmup": len(warmup.samples),
        "warmup_errors": len(warmup.errors), "concurrency": args.concurrency, "database": database,
        "seconds": round(measured.seconds, 3), "logins_per_second": round(rate, 2),
        "keyhall_share": round(sum(s["keyhall"] for s in measured.samples) /
                               sum(s["login"] for s in measured.samples), 3) if done else None,
        "steps": stats, "stopped": measured.stopped,
    }
    out("")
    out(f"(b) complete SAML logins: {done} ({args.logins} asked), concurrency {args.concurrency}, database "
        f"{database}, warm-up {len(warmup.samples)}")
    out("")
    out(f"{'step':<10} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'max ms':>8}  what")
    out(f"{'-' * 10} {'-' * 8} {'-' * 8} {'-' * 8} {'-' * 8}  {'-' * 60}")
    for step, label in STEPS:
        row = stats[step]
        if step == "keyhall":
            out("")
        out(step_line(step, row, label))
    out("")
    out(f"throughput: {rate:.2f} logins/s ({done} logins in {measured.seconds:.2f} s)"
        + (f"; Keyhall's share of login time: {summary['keyhall_share'] * 100:.0f}%" if done else ""))
    if measured.errors or warmup.errors:
        out(f"errors: {len(warmup.errors)} in warm-up, {len(measured.errors)} measured; first: "
            f"{(warmup.errors + measured.errors)[0][:500]}")
    if measured.stopped:
        out(f"stopped early: {measured.stopped}")
    return summary


# --- entry point ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.saml", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--validations", type=int, default=5000, help="(a) most validations per case")
    parser.add_argument("--validate-seconds", type=float, default=3.0, help="(a) most seconds per case")
    parser.add_argument("--logins", type=int, default=200, help="(b) measured logins")
    parser.add_argument("--concurrency", type=int, default=4, help="(b) simulated browsers (threads)")
    parser.add_argument("--warmup", type=int, default=10, help="(b) logins before measuring (not counted)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="(b) time budget for warm-up and measured logins; logins in flight finish")
    parser.add_argument("--users", type=int, default=50,
                        help="(b) distinct people, used in turn (the first login of each provisions it)")
    parser.add_argument("--database-url", default=None,
                        help="(b) PostgreSQL server on 127.0.0.1 (e.g. postgresql://postgres@127.0.0.1:5432/postgres); "
                             "a fresh database is created there and dropped afterwards. Default: SQLite in a temp dir")
    parser.add_argument("--no-pin", action="store_true",
                        help="(b) trust the IdP by its metadata URL alone, without pinning its certificate")
    parser.add_argument("--max-errors", type=int, default=10, help="(b) stop after this many failed logins")
    parser.add_argument("--server-log-level", default="INFO", help="(b) Keyhall's KEYHALL_LOG_LEVEL")
    parser.add_argument("--keep-logs", action="store_true", help="(b) print the servers' log tails at the end")
    parser.add_argument("--only", choices=("validate", "login"), default=None, help="run one part only")
    args = parser.parse_args(argv)
    for name in ("validations", "logins", "concurrency", "users"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.max_errors < 0 or not 0 < args.max_seconds <= 3600:
        parser.error("--warmup and --max-errors must be >= 0, --max-seconds in (0, 3600]")
    if not 0 < args.validate_seconds <= 600:
        parser.error("--validate-seconds must be in (0, 600]")
    return args


def run_logins(args: argparse.Namespace, out: Callable[[str], None]) -> tuple[dict[str, Any], bool]:
    children: list[Child] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="keyhall-bench-saml-") as tmp, \
            fresh_database(Path(tmp), args.database_url) as (database_url, database):
        workdir = Path(tmp)
        try:
            setup_started = time.monotonic()
            idp, idp_url, idp_cert = start_idp(workdir)
            children.append(idp)
            keyhall = start_instance(workdir, database_url, args.server_log_level)
            children.append(keyhall.child)
            setup = make_setup(keyhall.url, idp_url, idp_cert, keyhall.token,
                               f"bench-{uuid.uuid4().hex[:8]}.test", pin_certificate=not args.no_pin)
            setup_seconds = time.monotonic() - setup_started
            out("")
            out(f"set up in {setup_seconds:.1f} s: saml-idp {idp_url}, Keyhall {keyhall.url} on {database}; "
                f"warm-up {args.warmup}, then {args.logins} logins at concurrency {args.concurrency}")
            load_before = os.getloadavg()

            def user_for(offset: int) -> Callable[[int], str]:
                return lambda index: f"user{(offset + index) % args.users:05d}"

            warmup, measured = warm_then_measure(lambda: Browser(setup), user_for, args, stop)
            summary = report_logins(args, database, warmup, measured, out)
            summary.update(setup_seconds=round(setup_seconds, 2), loadavg_1m_before=round(load_before[0], 2),
                           loadavg_1m_after=round(os.getloadavg()[0], 2))
            out(f"machine load (1 min) before the logins: {load_before[0]:.2f}, after: "
                f"{summary['loadavg_1m_after']:.2f} on {os.cpu_count()} CPUs (the IdP, Keyhall and this driver "
                f"share them)")
            if args.keep_logs:
                for child in children:
                    out(f"--- {child.name} log (tail) ---\n{child.log()[-2000:]}")
        finally:
            for child in reversed(children):
                child.stop()
    ok = not (measured.errors or warmup.errors) and bool(measured.samples)
    return summary, ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)

    def out(line: str) -> None:
        print(line, flush=True)

    summary: dict[str, Any] = {"bench": "saml", "nproc": os.cpu_count(), "python": platform.python_version()}
    ok = True
    try:
        if args.only in (None, "validate"):
            results = [validate_case(label, file, overrides, count=args.validations, seconds=args.validate_seconds)
                       for label, file, overrides in VALIDATION_CASES]
            summary["validation"] = report_validations(results, out)
            summary["validations_per_second"] = summary["validation"][HEADLINE_CASE]["per_second"]
        if args.only in (None, "login"):
            summary["login"], ok = run_logins(args, out)
            summary["logins_per_second"] = summary["login"]["logins_per_second"]
    except BenchError as exc:
        print(f"bench.saml: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.saml: interrupted; processes stopped and temporary files removed", file=sys.stderr)
        return 130
    out("")
    out(json.dumps(summary, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
