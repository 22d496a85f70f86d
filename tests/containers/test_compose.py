"""``compose.yaml`` run with ``podman-compose``: PostgreSQL, Redis, two Keyhall replicas and nginx.

The file names official images and a bridge network with service names; this machine reaches no
registry and its podman runs containers on the host's network only. So the test runs a copy of
the file with those two things changed and nothing else: each image becomes the image built here
(Keyhall's, or a stand-in from ``deploy/standins/``), and each service moves to a free 127.0.0.1
port of the host (``network_mode: host``; ``postgres:5432`` and the other service addresses in the
replicas' settings and in ``deploy/nginx.conf`` become those ports). Services, environment,
volumes, health checks and dependencies are the file's own.

A product's sign-in started on one replica finishes on the other, its code redeemed through the
proxy, whose address is the public URL (the issuer). nginx replaces a client's X-Forwarded-For
with the address it saw, and the replicas log that address. The ``dev`` profile's service (which this
podman-compose cannot select by profile) runs alone, with its environment from the file.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from keyhall.security.secrets import new_key
from tests.containers.podman import IMAGE, Container, podman, podman_env, require_image, wait_ready
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port, peer_unavailable
from tests.support.servers import authorize, make_tenant, product_code, token_request

ROOT = Path(__file__).resolve().parents[2]
STANDINS = {
    "postgres": "localhost/keyhall-standin-postgres",
    "redis": "localhost/keyhall-standin-redis",
    "proxy": "localhost/keyhall-standin-nginx",
}
REPLICAS = ("keyhall-a", "keyhall-b")
START_TIMEOUT = 180.0  # seconds for the whole stack to answer (PostgreSQL's first start included)


@dataclass(frozen=True)
class Stack:
    project: str
    public_url: str
    replicas: dict[str, str]  # service → its own URL

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"


def host_networked(compose: dict[str, Any], ports: dict[str, int], workdir: Path) -> dict[str, Any]:
    """``compose.yaml`` on this machine: built images, host network, one free port per service."""
    services = {name: spec for name, spec in compose["services"].items() if "profiles" not in spec}
    postgres, redis = f"127.0.0.1:{ports['postgres']}", f"127.0.0.1:{ports['redis']}"
    for name, spec in services.items():
        spec.pop("build", None)
        spec.pop("networks", None)
        spec.pop("ports", None)
        spec["network_mode"] = "host"
        spec["image"] = IMAGE if name in REPLICAS else STANDINS[name]
    services["postgres"]["environment"]["PGPORT"] = str(ports["postgres"])
    services["redis"]["command"] += ["--port", str(ports["redis"]), "--bind", "127.0.0.1"]
    for name in REPLICAS:
        env = services[name]["environment"] = dict(services[name]["environment"])
        env["KEYHALL_DATABASE_URL"] = env["KEYHALL_DATABASE_URL"].replace("@postgres:5432/", f"@{postgres}/")
        env["KEYHALL_REDIS_URL"] = env["KEYHALL_REDIS_URL"].replace("redis:6379", redis)
        env["KEYHALL_HOST"] = "127.0.0.1"
        env["KEYHALL_PORT"] = str(ports[name])
        env["KEYHALL_TRUSTED_PROXIES"] = "127.0.0.1"  # the proxy's address on the host network
        env["KEYHALL_ALLOW_INSECURE_IDP_URLS"] = "1"  # the test IdP is http on loopback
        env["KEYHALL_ALLOW_UNVERIFIED_DOMAINS"] = "1"
        env["KEYHALL_DOMAIN_CHECK_INTERVAL_SECONDS"] = "0"
    nginx = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    for name in REPLICAS:
        nginx = nginx.replace(f"server {name}:8000", f"server 127.0.0.1:{ports[name]}")
    nginx = nginx.replace("listen 8080;", f"listen 127.0.0.1:{ports['proxy']};")
    assert "keyhall-a:8000" not in nginx
    assert f"listen 127.0.0.1:{ports['proxy']}" in nginx
    (workdir / "nginx.conf").write_text(nginx, encoding="utf-8")
    services["proxy"]["volumes"] = [f"{workdir / 'nginx.conf'}:/etc/nginx/nginx.conf:ro"]
    volumes = {name: spec for name, spec in compose["volumes"].items() if name != "keyhall-dev-data"}
    return {"services": services, "volumes": volumes}


def compose(project: str, file: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    wrapper = Path(__file__).with_name("podman_host_network.py")
    return subprocess.run(["podman-compose", "--podman-path", str(wrapper), "-p", project, "-f", str(file), *args],
                          env={**podman_env(), **env}, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_image()
    for image in STANDINS.values():
        require_image(image)
    if subprocess.run(["podman-compose", "version"], capture_output=True, check=False).returncode != 0:
        peer_unavailable("podman-compose is not installed (make test-containers installs it)")
    workdir = tmp_path_factory.mktemp("compose")
    ports = {name: free_port() for name in ("postgres", "redis", "proxy", *REPLICAS)}
    public_url = f"http://127.0.0.1:{ports['proxy']}"
    original = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    file = workdir / "compose.yaml"
    file.write_text(yaml.safe_dump(host_networked(original, ports, workdir)), encoding="utf-8")
    project = f"khtest{uuid.uuid4().hex[:8]}"
    env = {"POSTGRES_PASSWORD": new_key(), "KEYHALL_SECRET_KEYS": new_key(), "KEYHALL_PUBLIC_URL": public_url}
    try:
        up = compose(project, file, env, "up", "-d")
        assert up.returncode == 0, up.stderr[-3000:]
        assert "exit code: 125" not in up.stdout + up.stderr, (up.stdout + up.stderr)[-3000:]
        replicas = {name: f"http://127.0.0.1:{ports[name]}" for name in REPLICAS}
        try:
            for url in (*replicas.values(), public_url):
                wait_ready(f"{url}/readyz", START_TIMEOUT)
        except AssertionError as exc:
            logs = "\n".join(f"--- {name} ---\n{podman('logs', f'{project}_{name}_1', check=False).stderr[-2000:]}"
                             for name in ("postgres", *REPLICAS, "proxy"))
            raise AssertionError(f"{exc}\n{logs}") from None
        yield Stack(project, public_url, replicas)
    finally:
        compose(project, file, env, "down", "-v")
        podman("network", "rm", "-f", f"{project}_default", check=False)  # made by podman-compose, unused


def test_the_stack_is_what_compose_yaml_describes(stack: Stack) -> None:
    names = podman("ps", "--filter", f"label=io.podman.compose.project={stack.project}",
                   "--format", "{{.Names}}").stdout.split()
    assert sorted(names) == sorted(stack.container(s) for s in ("postgres", "redis", "proxy", *REPLICAS))
    # The replicas share PostgreSQL and Redis and announce the proxy's address as theirs.
    for url in (*stack.replicas.values(), stack.public_url):
        ready = httpx.get(f"{url}/readyz", trust_env=False, timeout=10).json()
        assert ready == {"status": "ready", "database": "postgresql"}
        issuer = httpx.get(f"{url}/.well-known/openid-configuration", trust_env=False, timeout=10).json()["issuer"]
        assert issuer == stack.public_url
    # Each replica's data volume is its own, and the server in it is not root.
    for name in REPLICAS:
        assert podman("exec", stack.container(name), "id", "-u").stdout.strip() == "10001"
        mounts = json.loads(podman("inspect", "--format", "{{json .Mounts}}", stack.container(name)).stdout)
        assert [(m["Destination"], m["Name"]) for m in mounts] == [("/data", f"{stack.project}_{name}-data")]


def test_a_sign_in_started_on_one_replica_finishes_on_the_other(stack: Stack, oidc_idp: OidcIdp) -> None:
    a, b = stack.replicas["keyhall-a"], stack.replicas["keyhall-b"]
    public = stack.public_url
    token = json.loads(podman("exec", stack.container("keyhall-a"), "keyhall", "key", "create",
                              "--instance").stdout)["token"]
    tenant = make_tenant(public, token, oidc_idp.issuer, oidc_idp.register_client, public_url=public)
    with httpx.Client(trust_env=False, timeout=15) as browser:
        started = authorize(browser, a, tenant, "alice")
        callback = oidc_idp.scripted_login(started.idp_url, "alice")
        assert callback.startswith(f"{public}/sso/{tenant.connection['id']}/oidc/callback?")
        # The IdP sends the browser back to the public URL; this time it reaches replica B directly.
        code = product_code(browser.get(b + callback.removeprefix(public)), tenant, started, public)
    issued = token_request(public, tenant, {"grant_type": "authorization_code", "code": code,
                                            "redirect_uri": tenant.redirect_uri, "code_verifier": started.verifier})
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    for url in (a, b):
        info = httpx.get(f"{url}/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"},
                         trust_env=False, timeout=10)
        assert info.status_code == 200, info.text
        assert info.json()["email"] == "alice@example.com"
    # A code is good once, whichever replica sees it again.
    again = token_request(a, tenant, {"grant_type": "authorization_code", "code": code,
                                      "redirect_uri": tenant.redirect_uri, "code_verifier": started.verifier})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_the_dev_profile_serves_development_mode_with_its_test_idp() -> None:
    image = require_image()
    service = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))["services"]["keyhall-dev"]
    assert service["profiles"] == ["dev"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**service["environment"], "KEYHALL_PUBLIC_URL": url, "KEYHALL_HOST": "127.0.0.1", "KEYHALL_PORT": str(port)}
    assert env["KEYHALL_DEV"] == "1"
    with Container(image, env) as container:
        try:
            wait_ready(f"{url}/readyz", 90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{container.logs()}") from None
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as api:
            assert api.get("/readyz").json() == {"status": "ready", "database": "sqlite"}
            product = api.get("/_dev/app")
            assert product.status_code == 200
            assert "Example product" in product.text
            discovery = api.get("/_dev/idp/.well-known/openid-configuration")
            assert discovery.status_code == 200, discovery.text
            assert discovery.json()["issuer"] == f"{url}/_dev/idp"
            metadata = api.get("/_dev/idp/saml/metadata")
            assert metadata.status_code == 200
            assert "X509Certificate" in metadata.text
        # The SAML side of the test IdP signs with the xmlsec1 program: the image has it.
        assert container.exec("xmlsec1", "--version").returncode == 0
        # SQLite and the key file live in the data volume, the key file readable by its owner only.
        assert container.exec("stat", "-c", "%a %u", "/data/secret_keys").stdout.split() == ["600", "10001"]
        assert container.exec("test", "-f", "/data/keyhall.db").returncode == 0


def access_lines(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    """The replicas' access-log lines (JSON, in the container log) of one request id."""
    lines = []
    for name in REPLICAS:
        done = podman("logs", stack.container(name), check=False)
        for line in (done.stdout + done.stderr).splitlines():
            if request_id in line and line.startswith("{"):
                lines.append(json.loads(line))
    return lines


def test_the_proxy_writes_x_forwarded_for_and_the_replicas_believe_only_it(stack: Stack) -> None:
    # Through nginx, a client's own X-Forwarded-For is replaced by the address nginx saw (here, all
    # on the host's loopback, 127.0.0.1); straight from a trusted peer the header is believed.
    through, direct = f"probe-{uuid.uuid4().hex}", f"probe-{uuid.uuid4().hex}"
    spoofed = {"X-Forwarded-For": "203.0.113.7"}
    answer = httpx.get(f"{stack.public_url}/healthz", headers={**spoofed, "X-Request-ID": through}, trust_env=False)
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == through
    answer = httpx.get(f"{stack.replicas['keyhall-a']}/healthz", headers={**spoofed, "X-Request-ID": direct},
                       trust_env=False)
    assert answer.status_code == 200
    proxied, straight = access_lines(stack, through), access_lines(stack, direct)
    assert len(proxied) == 1, proxied
    assert len(straight) == 1, straight
    assert proxied[0]["client"] == "127.0.0.1", proxied
    assert straight[0]["client"] == "203.0.113.7", straight
