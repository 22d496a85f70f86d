"""Okta- and Entra ID-shaped request sequences, kept as fixture files written from their public SCIM
documentation (tests/fixtures/scim/), replayed against Keyhall on the suite's database (SQLite, or
PostgreSQL with KEYHALL_TEST_DATABASE_URL). After a deactivation the native users API must show the
user disabled, after a reactivation enabled again, after a DELETE gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Keyhall, auth
from tests.support.scim import Directory, create_user, make_directory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scim"
SEQUENCES = sorted(p.name for p in FIXTURES.glob("*.json"))


def substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, replacement in names.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, list):
        return [substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, names) for k, v in value.items()}
    return value


def matches(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected``: dicts by the keys ``expected`` names, lists item by
    item and of the same length, ``"*"`` for any value."""
    if expected == "*":
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        return [p for k, v in expected.items() for p in matches(v, actual.get(k), f"{where}.{k}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {len(expected)} items, got {actual!r}"]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [p for i, (e, a) in pairs for p in matches(e, a, f"{where}[{i}]")]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def check_native_user(keyhall: Keyhall, directory: Directory, user_id: str, effect: str) -> None:
    response = keyhall.client.get(f"/v1/organizations/{directory.tenant.slug}/users/{user_id}",
                                  headers=auth(directory.tenant.owner))
    if effect == "user_deleted":
        assert response.status_code == 404
        return
    assert response.status_code == 200, response.text
    assert response.json()["disabled"] is (effect == "user_disabled")


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_replay(keyhall: Keyhall, sequence: str) -> None:
    script = json.loads((FIXTURES / sequence).read_text())
    tenant = keyhall.tenant(f"Replay {sequence.split('_')[0]}")
    directory = make_directory(keyhall, tenant, provider=sequence.split("_")[0])
    names: dict[str, str] = {}
    for index, user_name in enumerate(script.get("setup_users", [])):
        names[f"user_{index}"] = create_user(keyhall.client, directory, user_name)["id"]
    for step in script["steps"]:
        path = substitute(step["path"], names)
        response = keyhall.client.request(step["method"], directory.path + path, params=substitute(
            step.get("query"), names), json=substitute(step.get("body"), names), headers=directory.headers())
        expect = step["expect"]
        assert response.status_code == expect["status"], f"{step['name']}: {response.text}"
        assert response.headers["content-type"].startswith("application/scim+json"), step["name"]
        body = response.json() if response.content else {}
        problems = matches(substitute(expect.get("json", {}), names), body)
        assert problems == [], f"{step['name']}: {problems}"
        for absent in expect.get("absent", []):
            assert absent not in body, f"{step['name']}: {absent} should not be in the response"
        for key, attribute in step.get("capture", {}).items():
            names[key] = body[attribute]
        if "then" in step:
            check_native_user(keyhall, directory, names["user_id"], step["then"])
