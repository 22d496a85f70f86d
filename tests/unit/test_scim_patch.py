"""PATCH (RFC 7644 §3.5.2) as Keyhall applies it: member operations read as set changes (the
shapes Okta and Entra ID send), everything else applied to the resource by scim2-models under
Keyhall's tolerance policy, all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from keyhall.errors import InvalidInput
from keyhall.protocols.scim import resources as scim
from keyhall.protocols.scim.members import MemberChange, displays_of, final_members, split_group_patch

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def test_member_operations_become_set_changes_in_order() -> None:
    split = split_group_patch(body(
        {"op": "Add", "path": "members", "value": [{"value": "u1", "display": "Ann"}, {"value": "u2"}]},
        {"op": "Remove", "path": "members", "value": [{"value": "u2"}]},  # Entra: remove with a value
        {"op": "remove", "path": 'members[value eq "u3" or value eq "u4"]'},
        {"op": "replace", "path": "displayName", "value": "Eng"},
    ))
    assert split.members == [MemberChange("add", ("u1", "u2"), (("u1", "Ann"),)), MemberChange("remove", ("u2",)),
                             MemberChange("remove", ("u3", "u4"))]
    assert split.rest == body({"op": "replace", "path": "displayName", "value": "Eng"})
    assert final_members({"u3", "u5"}, split.members) == {"u1", "u5"}
    assert displays_of(split.members) == {"u1": "Ann"}


def test_pathless_replace_with_members_splits_the_value() -> None:
    split = split_group_patch(body({"op": "replace", "value": {"id": "g", "displayName": "Ops",
                                                               "members": [{"value": "u9"}]}}))
    assert split.members == [MemberChange("replace", ("u9",))]
    assert split.rest == body({"op": "replace", "value": {"id": "g", "displayName": "Ops"}})
    assert final_members({"u1"}, split.members) == {"u9"}


def test_remove_all_members() -> None:
    split = split_group_patch(body({"op": "remove", "path": "members"}))
    assert final_members({"u1", "u2"}, split.members) == set()
    assert split.rest is None


@pytest.mark.parametrize("operation", [
    {"op": "add", "path": 'members[value eq "u1"]', "value": [{"value": "u1"}]},
    {"op": "remove", "path": 'members[display eq "Ann"]'},
    {"op": "remove", "path": "members.display"},
    {"op": "add", "path": "members", "value": [{"display": "no value"}]},
])
def test_unsupported_member_paths_are_refused(operation: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        split_group_patch(body(operation))
    assert caught.value.details["scim_type"] in ("invalidPath", "invalidFilter", "invalidValue")


def user(**extra: Any) -> Any:
    meta = scim.meta("User", created=NOW, last_modified=NOW, location="", version=1)
    attributes = {"userName": "ann@example.com", "active": True,
                  "emails": [{"value": "ann@example.com", "type": "work", "primary": True}], **extra}
    return scim.load_user(attributes, id="u1", active=True, groups=[], meta=meta)


def test_entra_patch_shapes_apply() -> None:
    resource = user()
    patch = scim.parse_patch(body(
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "ann.new@example.com"},
        {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
         "value": "Sales"},
        {"op": "replace", "value": {"displayName": "Ann A", "name.givenName": "Ann"}},
    ), scim.UserResource)
    assert scim.apply_patch(patch, resource)
    rendered = scim.render(resource)
    assert rendered["active"] is False
    assert rendered["emails"][0]["value"] == "ann.new@example.com"
    assert rendered["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"] == "Sales"
    assert rendered["displayName"] == "Ann A"
    assert rendered["name"]["givenName"] == "Ann"


def test_a_failing_operation_leaves_the_resource_as_it_was() -> None:
    resource = user()
    patch = scim.parse_patch(body({"op": "replace", "path": "displayName", "value": "Changed"},
                                  {"op": "replace", "path": 'emails[value co "zzz"].type', "value": "home"}),
                             scim.UserResource)
    with pytest.raises(InvalidInput) as caught:
        scim.apply_patch(patch, resource)
    assert caught.value.details["scim_type"] in ("mutability", "noTarget", "invalidValue", "invalidPath")
    assert resource.display_name is None


@pytest.mark.parametrize("payload", [
    [],
    {"schemas": [PATCH]},
    {"schemas": [PATCH], "Operations": [{"op": "move", "path": "displayName"}]},
    {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": 3}]},
])
def test_malformed_patches_are_scim_400s(payload: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        scim.apply_patch(scim.parse_patch(payload, scim.UserResource), user())
    assert caught.value.details["scim_type"]


def test_password_is_never_stored_and_user_name_is_required() -> None:
    parsed = scim.parse_user({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a@b.example",
                              "password": "hunter2"})
    assert "password" not in scim.stored_attributes(parsed)
    with pytest.raises(InvalidInput) as caught:
        scim.parse_user({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]})
    assert "userName" in caught.value.message


def test_projection() -> None:
    resource = user(displayName="Ann")
    assert set(scim.render(resource, attributes=["userName"])) == {"schemas", "id", "userName"}
    assert "emails" not in scim.render(resource, excluded_attributes=["emails"])
