"""A Keyhall app on a real database, driven over HTTP (ASGI), with helpers to set up tenants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from keyhall.core import org_service
from keyhall.core.access import SYSTEM
from keyhall.core.connection_service import Context
from keyhall.core.vocabulary import Role
from keyhall.runtime import Runtime, utcnow


@dataclass
class Tenant:
    org: dict[str, Any]
    owner: str
    admin: str
    viewer: str

    @property
    def slug(self) -> str:
        return str(self.org["slug"])

    @property
    def id(self) -> str:
        return str(self.org["id"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def issue_key(runtime: Runtime, org: str | None, role: Role | None) -> str:
    """A new API key's bearer token, made as the CLI makes it."""
    ctx = Context(principal=SYSTEM, request_id=None, now=utcnow())
    with runtime.database.unit_of_work() as uow:
        _key, issued = org_service.create_key(uow, ctx, org, role)
    return issued.token


class Keyhall:
    """The app under test plus shortcuts for the set-up steps the CLI would do."""

    def __init__(self, client: TestClient, runtime: Runtime):
        self.client = client
        self.runtime = runtime
        self.instance_token = self.issue_key(None, None)

    def issue_key(self, org: str | None, role: Role | None) -> str:
        return issue_key(self.runtime, org, role)

    def tenant(self, name: str) -> Tenant:
        name = f"{name} {uuid.uuid4().hex[:6]}"  # one session database: names must not collide
        response = self.client.post("/v1/organizations", json={"name": name}, headers=auth(self.instance_token))
        assert response.status_code == 201, response.text
        org = response.json()
        return Tenant(
            org=org,
            owner=self.issue_key(org["id"], Role.OWNER),
            admin=self.issue_key(org["id"], Role.ADMIN),
            viewer=self.issue_key(org["id"], Role.VIEWER),
        )
