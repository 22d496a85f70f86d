"""The native directories API and the SCIM Users/Groups CRUD behind a directory's token, on a real
database: tokens shown once and rotated, tenancy, deprovisioning on delete, audit."""

from __future__ import annotations

from tests.support.api import Keyhall, auth
from tests.support.scim import ERROR_URN, GROUP_URN, SCIM_JSON, create_user, make_directory, patch_body


def test_a_directory_answers_its_token_once_and_rotation_invalidates_the_old_one(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Dir Tokens")
    directory = make_directory(keyhall, tenant)
    assert directory.info["scim_base_url"].endswith(f"/scim/v2/{directory.id}")
    assert directory.token.startswith("khd_")
    assert len(directory.token) >= 40
    read = keyhall.client.get(directory.native, headers=auth(tenant.viewer))
    assert read.status_code == 200
    assert "token" not in read.json()
    assert read.json()["user_count"] == 0
    assert keyhall.client.get(f"{directory.path}/Users", headers=directory.headers()).status_code == 200

    rotated = keyhall.client.post(f"{directory.native}/token", headers=auth(tenant.owner))
    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["token"]
    old = keyhall.client.get(f"{directory.path}/Users", headers=directory.headers())
    assert old.status_code == 401
    assert old.json()["schemas"] == [ERROR_URN]
    assert old.json()["status"] == "401"
    assert old.headers["content-type"].startswith(SCIM_JSON)
    directory.token = new_token
    assert keyhall.client.get(f"{directory.path}/Users", headers=directory.headers()).status_code == 200
    assert keyhall.client.post(f"{directory.native}/token", headers=auth(tenant.viewer)).status_code == 403
    events = keyhall.client.get(f"/v1/organizations/{tenant.slug}/audit-events",
                                params={"action": "directory.token_rotated"}, headers=auth(tenant.owner)).json()
    assert len(events["data"]) == 1
    assert new_token not in str(events)


def test_another_organizations_directory_is_not_found_and_its_token_opens_nothing_else(keyhall: Keyhall) -> None:
    mine, theirs = keyhall.tenant("Dir Mine"), keyhall.tenant("Dir Theirs")
    mine_dir, their_dir = make_directory(keyhall, mine), make_directory(keyhall, theirs)
    assert keyhall.client.get(their_dir.native.replace(theirs.slug, mine.slug),
                              headers=auth(mine.owner)).status_code == 404
    assert keyhall.client.get(their_dir.native, headers=auth(mine.owner)).status_code == 404
    theirs_user = create_user(keyhall.client, their_dir, "x@theirs.example")
    # my directory's token on their directory: 401; their user through my directory: 404
    assert keyhall.client.get(f"{their_dir.path}/Users", headers=mine_dir.headers()).status_code == 401
    response = keyhall.client.get(f"{mine_dir.path}/Users/{theirs_user['id']}", headers=mine_dir.headers())
    assert response.status_code == 404
    assert response.json()["schemas"] == [ERROR_URN]
    assert keyhall.client.delete(f"{mine_dir.path}/Users/{theirs_user['id']}",
                                 headers=mine_dir.headers()).status_code == 404
    assert keyhall.client.get(f"{their_dir.path}/Users/{theirs_user['id']}",
                              headers=their_dir.headers()).status_code == 200


def test_users_and_groups_round_trip_and_deleting_the_directory_deprovisions(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Dir Crud")
    directory = make_directory(keyhall, tenant)
    client = keyhall.client
    ann = create_user(client, directory, "ann@crud.example", externalId="00u1")
    bob = create_user(client, directory, "bob@crud.example")
    assert ann["meta"]["location"].endswith(f"/Users/{ann['id']}")
    assert ann["meta"]["version"] == 'W/"1"'
    dup = client.post(f"{directory.path}/Users", json={"schemas": ann["schemas"], "userName": "ANN@crud.example"},
                      headers=directory.headers())
    assert dup.status_code == 409
    assert dup.json()["scimType"] == "uniqueness"

    group = client.post(f"{directory.path}/Groups", headers=directory.headers(), json={
        "schemas": [GROUP_URN], "displayName": "Engineering", "members": [{"value": ann["id"]}]})
    assert group.status_code == 201, group.text
    gid = group.json()["id"]
    assert [m["value"] for m in group.json()["members"]] == [ann["id"]]
    patched = client.patch(f"{directory.path}/Groups/{gid}", headers=directory.headers(), json=patch_body(
        {"op": "add", "path": "members", "value": [{"value": bob["id"]}]},
        {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'},
        {"op": "replace", "path": "displayName", "value": "Eng"}))
    assert patched.status_code == 200, patched.text
    assert patched.json()["displayName"] == "Eng"
    assert [m["value"] for m in patched.json()["members"]] == [bob["id"]]
    lean_patch = client.patch(f"{directory.path}/Groups/{gid}", params={"excludedAttributes": "members"},
                              headers=directory.headers(), json=patch_body({"op": "add", "path": "members",
                                                                            "value": [{"value": ann["id"]}]}))
    assert lean_patch.status_code == 200, lean_patch.text
    assert "members" not in lean_patch.json()
    client.patch(f"{directory.path}/Groups/{gid}", headers=directory.headers(),
                 json=patch_body({"op": "remove", "path": "members", "value": [{"value": ann["id"]}]}))
    read = client.get(f"{directory.path}/Users/{bob['id']}", headers=directory.headers()).json()
    assert read["groups"] == [{"value": gid, "display": "Eng", "type": "direct"}]
    admins = client.post(f"{directory.path}/Groups", headers=directory.headers(), json={
        "schemas": [GROUP_URN], "displayName": "Admins", "members": [{"value": bob["id"]}]}).json()
    for user_name, groups in (("BOB@crud.example", [(admins["id"], "Admins"), (gid, "Eng")]), ("ann@crud.example", [])):
        found = client.get(f"{directory.path}/Users", params={"filter": f'userName eq "{user_name}"'},
                           headers=directory.headers()).json()
        assert found["totalResults"] == 1
        assert [(g["value"], g["display"]) for g in found["Resources"][0].get("groups", [])] == groups
    assert client.delete(f"{directory.path}/Groups/{admins['id']}", headers=directory.headers()).status_code == 204
    lean = client.get(f"{directory.path}/Groups", params={"excludedAttributes": "members"},
                      headers=directory.headers()).json()
    assert lean["totalResults"] == 1
    assert "members" not in lean["Resources"][0]

    info = client.get(directory.native, headers=auth(tenant.owner)).json()
    assert (info["user_count"], info["group_count"]) == (2, 1)
    assert info["last_sync_at"]
    listed = client.get(f"{directory.native}/users", headers=auth(tenant.viewer)).json()
    assert sorted(u["user_name"] for u in listed["data"]) == ["ann@crud.example", "bob@crud.example"]
    assert client.get(f"{directory.native}/groups", headers=auth(tenant.viewer)).json()["data"][0]["display_name"] \
        == "Eng"
    org_users = client.get(f"/v1/organizations/{tenant.slug}/users", headers=auth(tenant.owner)).json()["data"]
    assert {u["email"] for u in org_users} == {"ann@crud.example", "bob@crud.example"}
    assert {(u["kind"], u["directory_id"]) for u in org_users} == {("directory", directory.id)}
    logged = client.get("/v1/events", params={"types": "directory.*", "limit": 200},
                        headers=auth(keyhall.instance_token)).json()["data"]
    mine = [(e["type"], e["data"]["id"]) for e in logged if e["data"]["directory_id"] == directory.id]
    assert ("directory.user.created", ann["id"]) in mine
    assert ("directory.user.created", bob["id"]) in mine
    assert ("directory.group.created", gid) in mine
    assert ("directory.group.updated", gid) in mine
    assert all(e["organization_id"] == tenant.id for e in logged if e["data"]["directory_id"] == directory.id)

    assert client.delete(directory.native, headers=auth(tenant.owner)).status_code == 204
    assert client.get(f"/v1/organizations/{tenant.slug}/users", headers=auth(tenant.owner)).json()["data"] == []
    assert client.get(f"{directory.path}/Users", headers=directory.headers()).status_code == 401


def test_bad_input_is_a_scim_4xx_naming_the_problem_and_nothing_is_written(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Dir Bad Input")
    directory = make_directory(keyhall, tenant)
    client = keyhall.client
    users = f"{directory.path}/Users"
    malformed = client.post(users, content=b'{"userName": ', headers=directory.headers())
    assert malformed.status_code == 400
    assert malformed.json()["scimType"] == "invalidSyntax"
    missing = client.post(users, json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]},
                          headers=directory.headers())
    assert missing.status_code == 400
    assert "userName" in missing.json()["detail"]
    wrong_type = client.post(users, json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                          "userName": {"nested": 1}}, headers=directory.headers())
    assert wrong_type.status_code == 400
    assert wrong_type.json()["scimType"] == "invalidValue"
    huge = client.post(users, content=b'{"userName": "' + b"x" * 1_100_000 + b'"}', headers=directory.headers())
    assert huge.status_code == 413
    assert huge.json()["schemas"] == [ERROR_URN]
    assert huge.headers["content-type"].startswith(SCIM_JSON)
    bad_filter = client.get(users, params={"filter": 'title eq "x"'}, headers=directory.headers())
    assert bad_filter.status_code == 400
    assert bad_filter.json()["scimType"] == "invalidFilter"
    no_token = client.get(users)
    assert no_token.status_code == 401
    assert no_token.json()["schemas"] == [ERROR_URN]
    assert client.get(users, headers=directory.headers()).json()["totalResults"] == 0

    user = create_user(client, directory, "kim@bad.example")
    stale = client.put(f"{users}/{user['id']}", json={**user, "displayName": "K"},
                       headers=directory.headers(**{"If-Match": 'W/"7"'}))
    assert stale.status_code == 412
    fresh = client.put(f"{users}/{user['id']}", json={**user, "displayName": "K"},
                       headers=directory.headers(**{"If-Match": user["meta"]["version"]}))
    assert fresh.status_code == 200, fresh.text
    assert fresh.headers["etag"] == 'W/"2"'
    half = client.patch(f"{users}/{user['id']}", headers=directory.headers(), json=patch_body(
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "replace", "path": 'emails[value co "nowhere"].type', "value": "home"}))
    assert half.status_code == 400
    after = client.get(f"{users}/{user['id']}", headers=directory.headers()).json()
    assert after["displayName"] == "K"
    assert after["meta"]["version"] == 'W/"2"'


def test_lists_page_by_start_index_and_count(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Dir Paging")
    directory = make_directory(keyhall, tenant)
    for index in range(5):
        create_user(keyhall.client, directory, f"p{index}@paging.example")
    page = keyhall.client.get(f"{directory.path}/Users", params={"startIndex": "2", "count": "2"},
                              headers=directory.headers()).json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (5, 2, 2)
    assert [u["userName"] for u in page["Resources"]] == ["p1@paging.example", "p2@paging.example"]
    found = keyhall.client.get(f"{directory.path}/Users", params={"filter": 'userName sw "P3"'},
                               headers=directory.headers()).json()
    assert [u["userName"] for u in found["Resources"]] == ["p3@paging.example"]
    both = keyhall.client.post(f"{directory.path}/.search", headers=directory.headers(), json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 3})
    assert both.status_code == 200, both.text
    assert both.json()["totalResults"] == 5
    assert len(both.json()["Resources"]) == 3


def test_the_token_is_stored_only_as_a_hash_and_members_cannot_come_from_another_directory(
        keyhall: Keyhall) -> None:
    from sqlalchemy import select

    from keyhall.security.api_keys import hash_secret
    from keyhall.storage.models import DirectoryRow

    tenant = keyhall.tenant("Dir Hash")
    mine, other = make_directory(keyhall, tenant, "A"), make_directory(keyhall, tenant, "B")
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.session.scalar(select(DirectoryRow.token_hash).where(DirectoryRow.id == mine.id))  # type: ignore[attr-defined]
    assert stored == hash_secret(mine.token)
    assert mine.token not in str(stored)
    outsider = create_user(keyhall.client, other, "out@hash.example")
    group = keyhall.client.post(f"{mine.path}/Groups", headers=mine.headers(), json={
        "schemas": [GROUP_URN], "displayName": "G", "members": [{"value": outsider["id"]}]})
    assert group.status_code == 400
    assert group.json()["scimType"] == "invalidValue"
    made = keyhall.client.post(f"{mine.path}/Groups", headers=mine.headers(),
                               json={"schemas": [GROUP_URN], "displayName": "G"})
    sneaky = keyhall.client.patch(f"{mine.path}/Groups/{made.json()['id']}", headers=mine.headers(), json=patch_body(
        {"op": "add", "path": "members", "value": [{"value": outsider["id"]}]}))
    assert sneaky.status_code == 400
    assert keyhall.client.get(f"{mine.path}/Groups/{made.json()['id']}",
                              headers=mine.headers()).json().get("members") is None


def test_a_put_without_active_does_not_switch_a_disabled_user_back_on(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Dir Put Active")
    directory = make_directory(keyhall, tenant)
    user = create_user(keyhall.client, directory, "lea@put.example")
    url = f"{directory.path}/Users/{user['id']}"
    off = keyhall.client.patch(url, headers=directory.headers(), json=patch_body(
        {"op": "replace", "path": "active", "value": False}))
    assert off.json()["active"] is False
    body = {k: v for k, v in user.items() if k not in ("active", "meta", "id")}
    put = keyhall.client.put(url, json={**body, "displayName": "Lea"}, headers=directory.headers())
    assert put.status_code == 200, put.text
    assert put.json()["active"] is False
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/users/{user['id']}", headers=auth(tenant.owner))
    assert native.json()["disabled"] is True


def test_an_organization_holds_a_directory_of_each_provider_and_deleting_one_deprovisions_only_its_own(
        keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Dir Providers")
    client = keyhall.client
    directories = {provider: make_directory(keyhall, tenant, provider.title(), provider)
                   for provider in ("okta", "entra", "google", "jumpcloud", "generic")}
    for provider, directory in directories.items():
        assert directory.info["provider"] == provider
        assert directory.info["scim_base_url"] == f"http://keyhall.test/scim/v2/{directory.id}"
        create_user(client, directory, f"someone@{provider}.example")
    unknown = client.post(f"/v1/organizations/{tenant.slug}/directories", json={"name": "X", "provider": "onelogin"},
                          headers=auth(tenant.owner))
    assert unknown.status_code == 400
    assert unknown.json()["error"]["details"]["field"] == "provider"
    listed = client.get(f"/v1/organizations/{tenant.slug}/directories", headers=auth(tenant.viewer)).json()["data"]
    assert sorted(d["provider"] for d in listed) == sorted(directories)

    google = directories.pop("google")
    assert client.delete(google.native, headers=auth(tenant.owner)).status_code == 204
    org_users = client.get(f"/v1/organizations/{tenant.slug}/users", headers=auth(tenant.owner)).json()["data"]
    assert sorted(u["email"] for u in org_users) == sorted(f"someone@{p}.example" for p in directories)
    assert client.get(f"{google.path}/Users", headers=google.headers()).status_code == 401
    for directory in directories.values():
        assert client.get(f"{directory.path}/Users", headers=directory.headers()).json()["totalResults"] == 1


def test_patch_errors_carry_the_scim_type_rfc_7644_gives_them(keyhall: Keyhall) -> None:
    directory = make_directory(keyhall, keyhall.tenant("Dir Scim Types"))
    user = create_user(keyhall.client, directory, "ray@types.example")
    url = f"{directory.path}/Users/{user['id']}"
    for operation, scim_type, named in [
        ({"op": "replace", "path": "id", "value": "other"}, "mutability", "id"),
        ({"op": "replace", "path": "groups", "value": [{"value": "g"}]}, "mutability", "groups"),
        ({"op": "replace", "path": 'emails[value co "nowhere"].type', "value": "home"}, "noTarget", "emails"),
        ({"op": "replace", "path": "emails[", "value": "x"}, "invalidPath", "path"),
        ({"op": "replace", "path": "userName", "value": 3}, "invalidValue", "userName"),
    ]:
        response = keyhall.client.patch(url, headers=directory.headers(), json=patch_body(operation))
        assert response.status_code == 400, (operation, response.text)
        body = response.json()
        assert (body["schemas"], body["scimType"]) == ([ERROR_URN], scim_type), (operation, body)
        assert named in body["detail"], (operation, body)
    assert keyhall.client.get(url, headers=directory.headers()).json()["meta"]["version"] == 'W/"1"'
