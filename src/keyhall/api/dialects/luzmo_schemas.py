"""Luzmo's request envelope and its members, as the SSO configuration page names them, and which
members each action reads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Envelope(_Strict):
    """Luzmo's request envelope."""

    action: Literal["create", "get", "update", "delete"]
    version: Literal["0.1.0"]
    key: StrictStr | None = None
    token: StrictStr | None = None
    id: StrictStr | None = None
    properties: dict[str, Any] | None = None
    find: dict[str, Any] | None = None
    associations: dict[str, Any] | list[Any] | None = None  # the SDKs send an empty one with create


class ConfigIn(_Strict):
    client_id: StrictStr | None = None
    client_secret: StrictStr | None = None
    issuer: StrictStr | None = None
    authorization_url: StrictStr | None = None
    token_url: StrictStr | None = None
    user_info_url: StrictStr | None = None


class PropertiesIn(_Strict):
    organization_id: StrictStr | None = None
    protocol: StrictStr | None = None
    config: ConfigIn = Field(default_factory=ConfigIn)
    disable_email_password: StrictBool = False


class WhereIn(_Strict):
    id: StrictStr | None = None
    organization_id: StrictStr | None = None
    protocol: StrictStr | None = None
    is_verified: StrictBool | None = None
    disable_email_password: StrictBool | None = None


class FindIn(_Strict):
    where: WhereIn = Field(default_factory=WhereIn)
    limit: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None
    offset: Annotated[StrictInt, Field(ge=0)] = 0


CONFIG_TO_CORE = {"client_id": "client_id", "client_secret": "client_secret", "issuer": "issuer",
                  "authorization_url": "authorization_url", "token_url": "token_url", "user_info_url": "userinfo_url"}
READ_ONLY = {
    "is_verified": "is read-only; it turns true by itself after the first successful sign-in through this "
                   "SSO configuration",
    "id": "is read-only; name the configuration to change in the envelope's id",
    "created_at": "is read-only",
    "updated_at": "is read-only",
}
ENVELOPE_USE = {"id": ("update", "delete"), "find": ("get",), "properties": ("create", "update", "delete"),
                "associations": ("create",)}
