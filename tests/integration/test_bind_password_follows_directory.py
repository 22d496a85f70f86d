"""A stored bind password follows its directory, performed as the attack against two real OpenLDAP
servers (``tests.support.slapd``): the connection's own directory, and a second one standing in
for a directory of the attacker's. Moving the connection's server or port there without resending
the password used to make the save-time check bind there as the service account with the password
stored for the first directory. Now the move is refused naming the password (a DN without one is
an unauthenticated bind, so there is nothing to store), the second directory's log shows no bind
as the service account, and the stored password stays with the directory it was given for. The
mask with a move is refused the same way; the new directory's own password is accepted and used.
Through the native API and the Configurations dialect.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import Keyhall, Tenant, auth
from tests.support.slapd import Slapd

MASK = "********"
CONFIGURATIONS = "/api/v1/sso/configurations"


@pytest.fixture(scope="module")
def other_directory() -> Iterator[Slapd]:
    server = Slapd.start()
    try:
        yield server
    finally:
        server.stop()


def service_binds(directory: Slapd) -> int:
    return directory.log().count(f'BIND dn="{directory.service_dn}"')


def make_connection(keyhall: Keyhall, slapd: Slapd) -> tuple[Tenant, str]:
    tenant = keyhall.tenant("Directory moved")
    body = {"protocol": "ldap", "name": "directory",
            "ldap": {**slapd.ldap_settings(), **slapd.bind_secrets()}}
    created = keyhall.client.post(f"/v1/organizations/{tenant.id}/connections", json=body, headers=auth(tenant.owner))
    assert created.status_code == 201, created.text
    return tenant, str(created.json()["id"])


def stored(keyhall: Keyhall, tenant: Tenant, cid: str) -> tuple[dict[str, Any], dict[str, str]]:
    with keyhall.runtime.database.unit_of_work() as uow:
        conn = uow.connections.get(tenant.id, cid)
    assert conn is not None
    return dict(conn.settings), dict(conn.secrets)


def native_move(keyhall: Keyhall, tenant: Tenant, cid: str, target: Slapd, password: str | None) -> Any:
    block: dict[str, Any] = {"server": f"ldap://{target.host}:{target.port}", "port": None}
    if password is not None:
        block["bind_password"] = password
    return keyhall.client.patch(f"/v1/organizations/{tenant.id}/connections/{cid}", json={"ldap": block},
                                headers=auth(tenant.owner))


def configurations_move(keyhall: Keyhall, tenant: Tenant, cid: str, target: Slapd, password: str | None) -> Any:
    block: dict[str, Any] = {"port": target.port}
    if password is not None:
        block["bindPassword"] = password
    return keyhall.client.patch(f"{CONFIGURATIONS}/{cid}", json={"ldapConfig": block}, headers=auth(tenant.owner))


MOVES = {"native": native_move, "configurations": configurations_move}
#: The field each surface names in its refusal, and where its error body holds it.
REFUSED_FIELD = {"native": "ldap.bind_password", "configurations": "ldapConfig.bindPassword"}


@pytest.mark.parametrize("surface", sorted(MOVES))
@pytest.mark.parametrize("password", [None, MASK], ids=["without_password", "with_mask"])
def test_a_moved_directory_never_gets_the_stored_password(
    keyhall: Keyhall, slapd: Slapd, other_directory: Slapd, surface: str, password: str | None
) -> None:
    tenant, cid = make_connection(keyhall, slapd)
    settings_before, secrets_before = stored(keyhall, tenant, cid)
    binds_before = service_binds(other_directory)

    moved = MOVES[surface](keyhall, tenant, cid, other_directory, password)

    assert service_binds(other_directory) == binds_before, "Keyhall bound at the other directory"
    assert moved.status_code == 400, moved.text
    error = moved.json()["error"]
    assert error["details"]["field"] == REFUSED_FIELD[surface]
    assert error["message"].startswith(REFUSED_FIELD[surface] + ": ")
    assert slapd.service_password not in moved.text
    # Nothing written: the password stays stored for, and sent only to, its own directory.
    assert stored(keyhall, tenant, cid) == (settings_before, secrets_before)
    native = keyhall.client.get(f"/v1/organizations/{tenant.id}/connections/{cid}", headers=auth(tenant.owner))
    assert native.json()["ldap"]["bind_password_set"] is True
    assert native.json()["ldap"]["port"] == slapd.port


@pytest.mark.parametrize("surface", sorted(MOVES))
def test_the_new_directorys_own_password_is_accepted_and_used(
    keyhall: Keyhall, slapd: Slapd, other_directory: Slapd, surface: str
) -> None:
    tenant, cid = make_connection(keyhall, slapd)
    binds_before = service_binds(other_directory)
    accepted_before = other_directory.log().count("RESULT tag=97 err=0")

    moved = MOVES[surface](keyhall, tenant, cid, other_directory, other_directory.service_password)

    assert moved.status_code == 200, moved.text
    assert service_binds(other_directory) > binds_before  # the save-time check bound there, with its own password
    assert other_directory.log().count("RESULT tag=97 err=0") > accepted_before
    _settings, secrets = stored(keyhall, tenant, cid)
    assert secrets == {"bind_password": other_directory.service_password}
