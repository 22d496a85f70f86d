"""How many SQL statements an IdP's sync costs per request (SQLite or PostgreSQL), counted as in
test_hot_path_statements.py: a ``POST /Users`` of an initial sync and a ``userName eq`` lookup.

The directory's token check is served from the cache behind one version probe
(``storage.cache``); creating a user needs no lookup first (the unique key refuses a clash); the
audit record and the event follow as plain INSERTs; a lookup is one deferred transaction, which reads
the user and their groups in one statement."""

from __future__ import annotations

import uuid

from keyhall.core.directories import DirectoryUser
from keyhall.runtime import utcnow
from tests.integration.test_hot_path_statements import _counts, _work, statements
from tests.support.api import Keyhall
from tests.support.scim import GROUP_URN, PATCH_URN, Directory, create_user, make_directory, user_body

#: probe, user, audit record, event, webhook subscriptions (+ the last-sync time at most every 10 s)
POST_USER_MAX = 6
#: probe, the user with their groups
LOOKUP_MAX = 2
#: probe, group, its members, the new ones' check, their insert, version bump, linked users, audit, event,
#: webhook subscriptions, the group read back (+ the last-sync time): as many for a thousand members as for ten
GROUP_PATCH_MAX = 12


def test_a_scim_post_and_a_lookup_cost_a_few_statements(keyhall: Keyhall) -> None:
    directory = make_directory(keyhall, keyhall.tenant("SCIM Statements"))
    create_user(keyhall.client, directory, "warm@example.com")  # warm: first-use work is not the hot path
    with statements(keyhall.runtime) as seen:
        created = keyhall.client.post(f"{directory.path}/Users", json=user_body("ann@example.com"),
                                      headers=directory.headers())
    assert created.status_code == 201, created.text
    work = _work(seen)
    assert not any("token_hash" in s for s in work), work  # the directory came from the cache
    # PostgreSQL: one more, the event log's ordering lock (core.events)
    assert len(work) <= POST_USER_MAX + (keyhall.runtime.database.backend == "postgresql"), work
    if keyhall.runtime.database.backend == "sqlite":
        assert {s for s in seen if s.upper().startswith("BEGIN")} == {"BEGIN IMMEDIATE"}

    with statements(keyhall.runtime) as seen:
        found = keyhall.client.get(f"{directory.path}/Users", params={"filter": 'userName eq "ANN@example.com"'},
                                   headers=directory.headers())
    assert found.status_code == 200, found.text
    assert found.json()["totalResults"] == 1
    work = _work(seen)
    assert all(s.upper().startswith("SELECT") for s in work), work
    assert not any("count(" in s.lower() for s in work), work  # a page that is not full is its own count
    assert len(work) <= LOOKUP_MAX, work
    if keyhall.runtime.database.backend == "sqlite":  # deferred: never waits for a sync's writes
        begins = sorted(s for s in seen if s.upper().startswith("BEGIN"))
        assert begins == ["BEGIN"] + ["BEGIN IMMEDIATE"] * _counts(seen)


def _seed_users(keyhall: Keyhall, directory: Directory, count: int, prefix: str) -> list[str]:
    """``count`` users of the directory, inserted in bulk through the storage layer (set-up only)."""
    now = utcnow()
    users = [DirectoryUser(id=str(uuid.uuid4()), organization_id=directory.tenant.id, directory_id=directory.id,
                           user_name=f"{prefix}{i}@bulk.example", external_id=None, active=True,
                           attributes={"userName": f"{prefix}{i}@bulk.example"}, email=f"{prefix}{i}@bulk.example",
                           name=None, given_name=None, family_name=None, created_at=now, updated_at=now)
             for i in range(count)]
    with keyhall.runtime.database.unit_of_work() as uow:
        uow.directory_users.add_many(users)
        uow.commit()
    return [u.id for u in users]


def test_a_group_patch_costs_the_same_statements_for_ten_members_as_for_a_thousand(keyhall: Keyhall) -> None:
    """Issue 13: a huge group PATCH cannot hold a database lock for long. Its members are checked,
    added and removed as set operations of a few statements, whatever their number."""
    directory = make_directory(keyhall, keyhall.tenant("SCIM Group Statements"))
    group = keyhall.client.post(f"{directory.path}/Groups", headers=directory.headers(),
                                json={"schemas": [GROUP_URN], "displayName": "Everyone"}).json()
    seen_by_size = {}
    for size in (10, 1000):
        members = _seed_users(keyhall, directory, size, f"m{size}-")
        body = {"schemas": [PATCH_URN],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": m} for m in members]}]}
        with statements(keyhall.runtime) as seen:
            patched = keyhall.client.patch(f"{directory.path}/Groups/{group['id']}", json=body,
                                           params={"excludedAttributes": "members"}, headers=directory.headers())
        assert patched.status_code == 200, patched.text
        seen_by_size[size] = _work(seen)
    # PostgreSQL: one more, the event log's ordering lock (core.events)
    most = GROUP_PATCH_MAX + (keyhall.runtime.database.backend == "postgresql")
    assert len(seen_by_size[1000]) == len(seen_by_size[10]) <= most, seen_by_size[1000]
    read = keyhall.client.get(f"{directory.path}/Groups/{group['id']}", headers=directory.headers()).json()
    assert len(read["members"]) == 1010
