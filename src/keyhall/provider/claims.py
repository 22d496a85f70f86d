"""What the product learns about a person: ID token and userinfo claims (OIDC Core §5.1, §5.4)."""

from __future__ import annotations

import uuid
from typing import Any

from keyhall.core.organizations import Organization
from keyhall.core.users import User

_PAIRWISE = uuid.UUID("6f1d3c2e-8a47-4b8e-9c35-2d7f0e6a51b4")


def subject_for(client_id: str, user_id: str) -> str:
    """A pairwise subject (OIDC Core §8.1): stable per user and application, different across them."""
    return str(uuid.uuid5(_PAIRWISE, f"{client_id}:{user_id}"))


def user_claims(user: User, org: Organization, scope: str, connection_id: str | None) -> dict[str, Any]:
    scopes = set(scope.split())
    claims: dict[str, Any] = {"org_id": org.id, "org_slug": org.slug, "connection_id": connection_id}
    if "email" in scopes:
        claims.update(email=user.email, email_verified=user.email_verified)
    if "profile" in scopes:
        claims.update(name=user.name, given_name=user.given_name, family_name=user.family_name,
                      preferred_username=user.username, picture=user.picture, locale=user.locale)
    if "groups" in scopes:
        claims["groups"] = list(user.groups)
    return {k: v for k, v in claims.items() if v is not None}
