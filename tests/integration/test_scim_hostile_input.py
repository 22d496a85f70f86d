"""Whatever a directory sends, the SCIM surface answers a 4xx in the SCIM error schema, never a
5xx: generated JSON bodies (Hypothesis, bounded and derandomized for CI) for user and group
creation, replacement and PATCH, and generated filter and paging parameters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api import Keyhall
from tests.support.scim import ERROR_URN, GROUP_URN, PATCH_URN, USER_URN, Directory, create_user, make_directory

SETTINGS = settings(max_examples=40, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=12) | st.sampled_from(
    ["False", "True", "members", "active", 'members[value eq "x"]', 'emails[type eq "work"].value', "userName",
     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "Add", "Remove", "Replace"])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["op", "path", "value", "userName", "displayName", "members", "emails", "active", "schemas",
                     "Operations", "name", "externalId", "id", "meta", "groups"]), inner, max_size=4), max_leaves=12)
operations = st.fixed_dictionaries({"op": st.sampled_from(["add", "Replace", "remove", "copy"]) | scalars},
                                   optional={"path": scalars, "value": json_values})
patches = st.fixed_dictionaries({"schemas": st.just([PATCH_URN]), "Operations": st.lists(operations, max_size=3)})
users = st.fixed_dictionaries({"schemas": st.just([USER_URN])}, optional={
    "userName": scalars, "active": scalars, "emails": json_values, "name": json_values, "externalId": scalars,
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": json_values})
groups = st.fixed_dictionaries({"schemas": st.just([GROUP_URN])}, optional={
    "displayName": scalars, "members": json_values, "externalId": scalars})


@pytest.fixture(scope="module")
def target(keyhall: Keyhall) -> tuple[Keyhall, Directory, str, str]:
    directory = make_directory(keyhall, keyhall.tenant("Scim Hostile"))
    user = create_user(keyhall.client, directory, "hostile@example.com")
    group = keyhall.client.post(f"{directory.path}/Groups", headers=directory.headers(),
                                json={"schemas": [GROUP_URN], "displayName": "Hostile"}).json()
    return keyhall, directory, user["id"], group["id"]


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["schemas"] == [ERROR_URN]


@SETTINGS
@given(body=users | json_values)
def test_user_bodies(target: tuple[Keyhall, Directory, str, str], body: Any) -> None:
    keyhall, directory, user_id, _ = target
    check(keyhall.client.post(f"{directory.path}/Users", json=body, headers=directory.headers()))
    check(keyhall.client.put(f"{directory.path}/Users/{user_id}", json=body, headers=directory.headers()))


@SETTINGS
@given(body=patches | json_values)
def test_patches(target: tuple[Keyhall, Directory, str, str], body: Any) -> None:
    keyhall, directory, user_id, group_id = target
    check(keyhall.client.patch(f"{directory.path}/Users/{user_id}", json=body, headers=directory.headers()))
    check(keyhall.client.patch(f"{directory.path}/Groups/{group_id}", json=body, headers=directory.headers()))


@SETTINGS
@given(body=groups | json_values)
def test_group_bodies(target: tuple[Keyhall, Directory, str, str], body: Any) -> None:
    keyhall, directory, _, group_id = target
    check(keyhall.client.post(f"{directory.path}/Groups", json=body, headers=directory.headers()))
    check(keyhall.client.put(f"{directory.path}/Groups/{group_id}", json=body, headers=directory.headers()))


@SETTINGS
@given(filter_=st.text(max_size=40) | st.sampled_from(['userName eq "a" and', "not (", 'members[value eq "x"]',
                                                       'emails[type eq "work"].value eq 3', "meta.created gt 1"]),
       start=st.text(max_size=4), count=st.text(max_size=4), attributes=st.text(max_size=20))
def test_list_parameters(target: tuple[Keyhall, Directory, str, str], filter_: str, start: str, count: str,
                         attributes: str) -> None:
    keyhall, directory, _, _ = target
    params = {"filter": filter_, "startIndex": start, "count": count, "attributes": attributes}
    for resource in ("Users", "Groups"):
        check(keyhall.client.get(f"{directory.path}/{resource}", params=params, headers=directory.headers()))
