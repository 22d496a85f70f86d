"""A whole User rendered straight from its stored attributes (``resources.user_response``) is the
response the models give (``render(load_user(...))``), for every User body of the IdP fixture
files and the edge cases; when it cannot be (an empty value stored below the top level), it says
so with None."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyhall.protocols.scim import resources as scim

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scim"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def _fixture_bodies() -> list[dict[str, Any]]:
    bodies = []
    for path in sorted(FIXTURES.glob("*.json")):
        document = json.loads(path.read_text())
        bodies += [user for user in document.get("setup_users", []) if isinstance(user, dict)]
        bodies += [step["body"] for step in document["steps"] if step.get("method") in ("POST", "PUT")
                   and step.get("path", "").startswith("/Users") and isinstance(step.get("body"), dict)]
    return bodies


EXTRA = [
    {"schemas": [CORE, ENTERPRISE], "userName": "a@x.local", "externalId": "e1", "displayName": "A B",
     "name": {"givenName": "A", "familyName": "B", "formatted": "A B"}, "nickName": "a", "title": "Eng",
     "phoneNumbers": [{"value": "+1 555", "type": "work"}], "addresses": [{"locality": "Paris", "primary": True}],
     "emails": [{"primary": True, "value": "a@x.local", "type": "work"}, {"value": "a@home.local"}],
     "active": False, "password": "never shown", "preferredLanguage": "fr", "timezone": "Europe/Paris",
     ENTERPRISE: {"employeeNumber": "7", "department": "R&D",
                  "manager": {"value": "m1", "$ref": "https://x.local/Users/m1"}}},
    {"userName": "bare"},
    {"schemas": [CORE], "userName": "Emails.Empty", "emails": []},
    {"schemas": [CORE, ENTERPRISE], "userName": "ext.empty", ENTERPRISE: {}},
    {"schemas": [CORE], "userName": "name.empty", "name": {}},
    {"schemas": [CORE], "userName": "roles.empty", "roles": [], "emails": [{"value": "r@x.local"}]},
    {"schemas": [CORE], "userName": "nested.empty", "addresses": [{"locality": "Paris"}, {}]},
]
BODIES = _fixture_bodies() + EXTRA


def test_the_fixture_files_give_user_bodies_and_each_renders_from_the_row() -> None:
    assert len(_fixture_bodies()) >= 4
    for body in _fixture_bodies():
        fast = scim.user_response(scim.stored_attributes(scim.parse_user(body)), id="u1", active=True, groups=[],
                                  created=datetime(2026, 12, 7, tzinfo=UTC),
                                  last_modified=datetime(2026, 12, 7, tzinfo=UTC), location="l", version=1)
        assert fast is not None
        assert "roles" not in fast


@pytest.mark.parametrize("body", BODIES, ids=[str(b.get("userName")) for b in BODIES])
@pytest.mark.parametrize("active", [True, False, None])
@pytest.mark.parametrize("groups", [[], [("g1", "Engineering"), ("g2", "Sales")]])
@pytest.mark.parametrize("when", [datetime(2026, 12, 7, 6, 0, 0, 123456, tzinfo=UTC),
                                  datetime(2026, 12, 7, 6, 0, 0), datetime(2026, 12, 7, 6, 0, 1, tzinfo=UTC)])
def test_a_whole_user_from_the_stored_row_is_what_the_models_render(
        body: dict[str, Any], active: bool | None, groups: list[tuple[str, str]], when: datetime) -> None:
    attributes = scim.stored_attributes(scim.parse_user(body))
    location = "https://sso.example.com/scim/v2/d1/Users/u1"
    slow = scim.render(scim.load_user(attributes, id="u1", active=active, groups=groups, meta=scim.meta(
        "User", created=when, last_modified=when, location=location, version=4)))
    fast = scim.user_response(attributes, id="u1", active=active, groups=groups, created=when,
                              last_modified=when, location=location, version=4)
    if fast is None:  # an empty value stored deeper, or an empty extension: the models render it
        assert body["userName"] in ("ext.empty", "nested.empty") or not scim._all_assigned(attributes)
        return
    assert fast == slow
    assert "password" not in fast
