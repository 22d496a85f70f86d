"""The command line's everyday administration, in process (``main`` through click's runner, on the
suite's database): listing, revoking and deleting organizations, API keys and applications (audited,
as through the API), ``--version``, the warning before a data directory nobody named is created,
and a busy port refused in one line."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from keyhall import __version__
from keyhall.cli import main
from keyhall.runtime import Runtime


class Cli:
    def __init__(self, env: dict[str, str | None]) -> None:
        self.env = env

    def run(self, *args: str, **env: str | None) -> Result:
        return CliRunner().invoke(main, list(args), env={**self.env, **env}, catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self.run(*args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, runtime: Runtime) -> Cli:
    data_dir = tmp_path_factory.mktemp("cli-data")
    return Cli({"KEYHALL_DATA_DIR": str(data_dir), "KEYHALL_DATABASE_URL": runtime.settings.resolved_database_url,
               "KEYHALL_SECRET_KEYS": runtime.settings.secret_keys, "KEYHALL_PUBLIC_URL": None})


def audit_actions(runtime: Runtime, organization_id: str | None, target_id: str) -> list[str]:
    with runtime.database.unit_of_work() as uow:
        page = uow.audit.list_page(organization_id, limit=50, cursor=None, target_id=target_id)
    return [event.action for event in page.items]


def test_version(cli: Cli) -> None:
    result = cli.run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"keyhall, version {__version__}"


def test_list_revoke_and_delete_organizations_keys_and_applications(cli: Cli, runtime: Runtime) -> None:
    org = cli.json("org", "create", "Listed Corp", "--slug", "listed-corp")
    owner = cli.json("key", "create", "--org", "listed-corp", "--role", "owner")
    viewer = cli.json("key", "create", "--org", org["id"], "--role", "viewer", "--name", "dashboards")
    instance = cli.json("key", "create", "--instance")

    assert "listed-corp" in [o["slug"] for o in cli.json("org", "list")["data"]]
    keys = cli.json("key", "list", "--org", "listed-corp")["data"]
    assert [(k["key_id"], k["role"], k["revoked_at"]) for k in keys] == [
        (owner["key_id"], "owner", None), (viewer["key_id"], "viewer", None)]
    assert "secret" not in json.dumps(keys)
    assert owner["secret"] not in json.dumps(keys)

    revoked = cli.json("key", "revoke", viewer["key_id"])
    assert revoked["key_id"] == viewer["key_id"]
    assert revoked["revoked_at"]
    assert cli.json("key", "revoke", instance["key_id"])["revoked_at"]  # instance keys too
    assert audit_actions(runtime, org["id"], viewer["key_id"]) == ["api_key.created", "api_key.revoked"]
    wrong_org = cli.run("key", "revoke", owner["key_id"], "--org", "no-such-org")
    assert wrong_org.exit_code == 2
    assert "organization not found" in wrong_org.stderr

    created = cli.json("app", "create", "--name", "Listed App", "--redirect-uri", "https://app.example/cb")
    listed = {a["client_id"]: a for a in cli.json("app", "list")["data"]}
    assert listed[created["client_id"]]["name"] == "Listed App"
    assert created["client_secret"] not in json.dumps(listed)
    assert cli.json("app", "delete", created["client_id"]) == {"deleted": True, "client_id": created["client_id"]}
    assert created["client_id"] not in [a["client_id"] for a in cli.json("app", "list")["data"]]
    assert audit_actions(runtime, None, created["client_id"]) == ["application.created", "application.deleted"]

    assert cli.json("org", "delete", "listed-corp") == {"deleted": True, "id": org["id"], "slug": "listed-corp"}
    assert "listed-corp" not in [o["slug"] for o in cli.json("org", "list")["data"]]
    assert audit_actions(runtime, None, org["id"]) == ["organization.deleted"]
    for args in (("org", "delete", "listed-corp"), ("app", "delete", created["client_id"]),
                 ("key", "revoke", "nosuchkey")):
        gone = cli.run(*args)
        assert gone.exit_code == 2, args
        assert gone.stderr.startswith("error: "), gone.stderr
        assert "not found" in gone.stderr, gone.stderr


def test_a_data_directory_nobody_named_is_announced_before_it_is_created(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = cli.run("org", "list", KEYHALL_DATA_DIR=None, KEYHALL_DATABASE_URL=None)
    assert default.exit_code == 0, default.stderr
    assert f"warning: no data directory at {tmp_path / 'data'}" in default.stderr
    assert "--data-dir" in default.stderr
    assert (tmp_path / "data" / "keyhall.db").exists()

    named = tmp_path / "elsewhere"
    explicit = cli.run("--data-dir", str(named), "org", "list", KEYHALL_DATA_DIR=None, KEYHALL_DATABASE_URL=None)
    assert explicit.exit_code == 0, explicit.stderr
    assert explicit.stderr == ""
    assert (named / "keyhall.db").exists()
    again = cli.run("org", "list", KEYHALL_DATA_DIR=None, KEYHALL_DATABASE_URL=None)
    assert again.stderr == ""  # ./data exists now


def test_a_busy_port_is_refused_in_one_line(cli: Cli) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = cli.run("serve", "--port", str(port))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "--port N (make run PORT=N)" in lines[0]


def test_serve_takes_its_address_from_keyhall_host_and_port(cli: Cli) -> None:
    # The container image listens where KEYHALL_HOST and KEYHALL_PORT say; --host and --port win over them.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        from_env = cli.run("serve", KEYHALL_HOST="127.0.0.1", KEYHALL_PORT=str(port))
        flag_wins = cli.run("serve", "--port", str(port), KEYHALL_HOST="127.0.0.1", KEYHALL_PORT="8000")
        bad = cli.run("serve", KEYHALL_PORT="eighty")
    assert from_env.exit_code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in from_env.stderr
    assert flag_wins.exit_code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in flag_wins.stderr
    assert bad.exit_code == 2
    assert "KEYHALL_PORT" in bad.stderr
