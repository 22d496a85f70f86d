"""How many SQL statements an IdP's sync costs per request (SQLite or PostgreSQL), counted as in
test_hot_path_statements.py: a ``POST /Users`` of an initial sync and a ``userName eq`` lookup.

The directory's token check is served from the cache behind one version probe
(``storage.cache``); creating a user needs no lookup first (the unique key refuses a clash); the
audit record and the event follow as plain INSERTs; a lookup is one deferred transaction."""

from __future__ import annotations

from tests.integration.test_hot_path_statements import _counts, _work, statements
from tests.support.api import Keyhall
from tests.support.scim import create_user, make_directory, user_body

#: probe, user, audit record, event, webhook subscriptions (+ the last-sync time at most every 10 s)
POST_USER_MAX = 6
#: probe, the page of users, their groups
LOOKUP_MAX = 3


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
