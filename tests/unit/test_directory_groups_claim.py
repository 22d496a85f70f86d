"""Issue 13: a directory's groups feed the ``groups`` claim and the connection's group mappings
(``core.directories.groups_claim``, which sign-in and every SCIM membership change use)."""

from __future__ import annotations

from keyhall.core.directories import groups_claim


def test_without_mappings_the_claim_is_the_directory_groups_by_name() -> None:
    assert groups_claim(["Eng", "Admins", "Eng"], []) == ["Admins", "Eng"]
    assert groups_claim([], []) == []


def test_with_mappings_only_mapped_groups_reach_the_claim_under_their_mapped_names() -> None:
    mappings = [{"idp_group": "Eng", "group": "engineering"}, {"idp_group": "Admins", "group": "engineering"},
                {"idp_group": "Sales", "group": "sales"}]
    assert groups_claim(["Eng", "Admins", "Unmapped"], mappings) == ["engineering"]
    assert groups_claim(["Sales", "Eng"], mappings) == ["engineering", "sales"]
    assert groups_claim(["Unmapped"], mappings) == []
    assert groups_claim(["eng"], mappings) == []  # display names match exactly, as the IdP's group names do
