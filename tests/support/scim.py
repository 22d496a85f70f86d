"""Helpers for SCIM tests: a directory of a fresh tenant, and SCIM calls with its token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from tests.support.api import Keyhall, Tenant, auth

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_JSON = "application/scim+json"


@dataclass
class Directory:
    tenant: Tenant
    info: dict[str, Any]
    token: str

    @property
    def id(self) -> str:
        return str(self.info["id"])

    @property
    def path(self) -> str:
        """The SCIM base path (``scim_base_url`` without the host)."""
        return f"/scim/v2/{self.id}"

    @property
    def native(self) -> str:
        return f"/v1/organizations/{self.tenant.slug}/directories/{self.id}"

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": SCIM_JSON, **extra}


def make_directory(keyhall: Keyhall, tenant: Tenant, name: str = "Okta", provider: str = "okta") -> Directory:
    response = keyhall.client.post(f"/v1/organizations/{tenant.slug}/directories",
                                   json={"name": name, "provider": provider}, headers=auth(tenant.owner))
    assert response.status_code == 201, response.text
    info = response.json()
    return Directory(tenant=tenant, info=info, token=info["token"])


def user_body(user_name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [USER_URN], "userName": user_name, "active": True,
                            "name": {"givenName": user_name.split("@")[0].title(), "familyName": "Doe"},
                            "emails": [{"value": user_name, "type": "work", "primary": True}]}
    body.update(extra)
    return body


def create_user(client: TestClient, directory: Directory, user_name: str, **extra: Any) -> dict[str, Any]:
    response = client.post(f"{directory.path}/Users", json=user_body(user_name, **extra),
                           headers=directory.headers())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_URN], "Operations": list(operations)}
