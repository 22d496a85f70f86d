"""The native users API on a real database: read, change and delete one user; tenancy, roles,
If-Match, validation and the audit trail. (Taking access away end to end, with real sign-ins and
tokens, is in test_access_revocation.py.)"""

from __future__ import annotations

from typing import Any

from tests.support.api import Keyhall, Tenant, auth

PASSWORD = "correct horse battery staple"


def users_url(tenant: Tenant, suffix: str = "") -> str:
    return f"/v1/organizations/{tenant.slug}/users{suffix}"


def make_user(keyhall: Keyhall, tenant: Tenant, email: str = "dana@example.com") -> dict[str, Any]:
    response = keyhall.client.post(users_url(tenant), json={"email": email, "password": PASSWORD, "name": "Dana"},
                                   headers=auth(tenant.owner))
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == users_url(tenant, f"/{response.json()['id']}")
    user: dict[str, Any] = response.json()
    return user


def audit(keyhall: Keyhall, tenant: Tenant, action: str) -> list[dict[str, Any]]:
    response = keyhall.client.get(f"/v1/organizations/{tenant.slug}/audit-events", params={"action": action},
                                  headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["data"]
    return events


def test_a_user_is_read_changed_and_deleted(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Users Crud")
    user = make_user(keyhall, tenant)
    url = users_url(tenant, f"/{user['id']}")

    read = keyhall.client.get(url, headers=auth(tenant.viewer))  # any role reads
    assert read.status_code == 200, read.text
    assert read.headers["etag"] == '"1"'
    assert read.json() == user
    assert read.json()["disabled"] is False
    assert "password" not in read.text

    changed = keyhall.client.patch(url, json={"given_name": "Dana", "family_name": "Doe", "name": None},
                                   headers=auth(tenant.owner))
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["given_name"], body["family_name"], body["name"]) == ("Dana", "Doe", None)
    assert body["version"] == 2
    assert changed.headers["etag"] == '"2"'
    [event] = audit(keyhall, tenant, "user.updated")
    assert event["target_id"] == user["id"]
    assert event["changes"] == {"family_name": {"from": None, "to": "Doe"}, "given_name": {"from": None, "to": "Dana"},
                                "name": {"from": "Dana", "to": None}}

    # A PATCH that changes nothing writes nothing.
    same = keyhall.client.patch(url, json={"family_name": "Doe"}, headers=auth(tenant.owner))
    assert same.status_code == 200
    assert same.json()["version"] == 2
    assert len(audit(keyhall, tenant, "user.updated")) == 1

    disabled = keyhall.client.patch(url, json={"disabled": True}, headers=auth(tenant.owner))
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True
    assert [e["changes"] for e in audit(keyhall, tenant, "user.disabled")] == [
        {"disabled": {"from": False, "to": True}}]

    deleted = keyhall.client.delete(url, headers=auth(tenant.owner))
    assert deleted.status_code == 204, deleted.text
    assert keyhall.client.get(url, headers=auth(tenant.owner)).status_code == 404
    assert keyhall.client.delete(url, headers=auth(tenant.owner)).status_code == 404
    [event] = audit(keyhall, tenant, "user.deleted")
    assert event["changes"]["email"] == {"from": "dana@example.com", "to": None}
    listed = keyhall.client.get(users_url(tenant), headers=auth(tenant.owner)).json()["data"]
    assert listed == []


def test_another_organizations_user_is_not_found(keyhall: Keyhall) -> None:
    home, other = keyhall.tenant("Users Home"), keyhall.tenant("Users Other")
    user = make_user(keyhall, home)
    # The other organization's owner names the user under its own organization, or under ours.
    for org in (other.slug, home.slug):
        url = f"/v1/organizations/{org}/users/{user['id']}"
        for method, body in (("GET", None), ("PATCH", {"disabled": True}), ("DELETE", None)):
            response = keyhall.client.request(method, url, json=body, headers=auth(other.owner))
            assert response.status_code == 404, (method, org, response.text)
    still = keyhall.client.get(users_url(home, f"/{user['id']}"), headers=auth(home.owner)).json()
    assert still["disabled"] is False
    assert keyhall.client.get(users_url(home, "/not-a-user"), headers=auth(home.owner)).status_code == 404


def test_changing_users_needs_the_sso_writer_role(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Users Roles")
    user = make_user(keyhall, tenant)
    url = users_url(tenant, f"/{user['id']}")
    for key in (tenant.viewer, tenant.admin):
        assert keyhall.client.patch(url, json={"disabled": True}, headers=auth(key)).status_code == 403
        assert keyhall.client.delete(url, headers=auth(key)).status_code == 403
    assert keyhall.client.get(url, headers=auth(tenant.owner)).json()["disabled"] is False
    allowed = keyhall.client.patch(f"/v1/organizations/{tenant.slug}", json={"admins_may_configure_sso": True},
                                   headers=auth(tenant.owner))
    assert allowed.status_code == 200, allowed.text
    assert keyhall.client.patch(url, json={"disabled": True}, headers=auth(tenant.admin)).status_code == 200
    assert keyhall.client.patch(url, json={"disabled": False}, headers=auth(tenant.viewer)).status_code == 403


def test_if_match_guards_against_lost_updates(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Users IfMatch")
    user = make_user(keyhall, tenant)
    url = users_url(tenant, f"/{user['id']}")
    first = keyhall.client.patch(url, json={"name": "First"}, headers={**auth(tenant.owner), "If-Match": '"1"'})
    assert first.status_code == 200, first.text
    stale = keyhall.client.patch(url, json={"name": "Stale"}, headers={**auth(tenant.owner), "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    stale_delete = keyhall.client.delete(url, headers={**auth(tenant.owner), "If-Match": '"1"'})
    assert stale_delete.status_code == 412
    bad = keyhall.client.patch(url, json={"name": "X"}, headers={**auth(tenant.owner), "If-Match": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["field"] == "If-Match"
    assert keyhall.client.get(url, headers=auth(tenant.owner)).json()["name"] == "First"
    gone = keyhall.client.delete(url, headers={**auth(tenant.owner), "If-Match": first.headers["etag"]})
    assert gone.status_code == 204


def test_bad_changes_are_refused_naming_the_field(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Users Invalid")
    user = make_user(keyhall, tenant)
    url = users_url(tenant, f"/{user['id']}")
    cases: list[tuple[Any, str]] = [
        ({"email": "ceo@victim.example"}, "email"),  # what was vouched for is not an admin's to edit
        ({"disabled": None}, "disabled"),
        ({"disabled": "maybe"}, "disabled"),
        ({"given_name": "x" * 513}, "given_name"),
        ({"name": ""}, "name"),
        ({"groups": ["admins"]}, "groups"),
    ]
    for body, field in cases:
        response = keyhall.client.patch(url, json=body, headers=auth(tenant.owner))
        assert response.status_code == 400, (body, response.text)
        assert field in response.text, (body, response.text)
    not_json = keyhall.client.patch(url, content=b"{", headers={**auth(tenant.owner),
                                                                 "Content-Type": "application/json"})
    assert not_json.status_code == 400
    unchanged = keyhall.client.get(url, headers=auth(tenant.owner)).json()
    assert unchanged == user
    assert audit(keyhall, tenant, "user.updated") == []
