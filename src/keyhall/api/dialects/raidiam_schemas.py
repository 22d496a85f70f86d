"""Raidiam's wire shapes: the FAPI headers it checks, path ids, request bodies and responses."""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Annotated, Literal

from fastapi import Header, Path, Request
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from keyhall.errors import InvalidInput, NotAcceptable

AUTH_DATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} (GMT|UTC)$"
)


def fapi_headers(
    request: Request,
    x_fapi_auth_date: Annotated[str | None, Header()] = None,
    x_fapi_customer_ip_address: Annotated[str | None, Header()] = None,
    x_fapi_interaction_id: Annotated[str | None, Header()] = None,
) -> None:
    """Check the FAPI headers and that the client accepts JSON (406 otherwise)."""
    accept = request.headers.get("accept", "")
    if accept and not any(
        part.split(";")[0].strip() in ("*/*", "application/*", "application/json") for part in accept.split(",")
    ):
        raise NotAcceptable("Accept: this API answers application/json only")
    if x_fapi_auth_date is not None and not AUTH_DATE.match(x_fapi_auth_date):
        raise InvalidInput(
            "x-fapi-auth-date: must be an RFC 7231 date like 'Sun, 10 Sep 2017 19:43:31 UTC'", field="x-fapi-auth-date"
        )
    if x_fapi_customer_ip_address is not None:
        try:
            ipaddress.ip_address(x_fapi_customer_ip_address)
        except ValueError:
            raise InvalidInput("x-fapi-customer-ip-address: must be an IP address",
                               field="x-fapi-customer-ip-address") from None
    if x_fapi_interaction_id is not None:
        try:
            uuid.UUID(x_fapi_interaction_id)
        except ValueError:
            raise InvalidInput("x-fapi-interaction-id: must be an RFC 4122 UUID",
                               field="x-fapi-interaction-id") from None


PathId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[^<>]*$")]
ServerPathId = Annotated[str, Path(max_length=40, pattern=r"^[^<>]*$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AuthorisationServerIn(_In):
    CustomerFriendlyName: str | None = Field(default=None, min_length=1, max_length=128)
    Issuer: str | None = Field(default=None, max_length=2048)
    OpenIDDiscoveryDocument: str | None = Field(default=None, max_length=2048)
    ClientId: str | None = Field(default=None, min_length=1, max_length=255)
    ClientSecret: str | None = Field(default=None, max_length=1024)


class SsoConfigurationIn(_In):
    DisplayName: Annotated[str, StringConstraints(max_length=64)] | None = None
    Contacts: Annotated[list[EmailStr], Field(min_length=1, max_length=10)] | None = None
    Status: Literal["Active", "Inactive"] = "Active"  # seed 004: "Default value: Active"
    TextRecord: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None


class AuthorisationServerOut(BaseModel):
    AuthorisationServerId: str
    OrganisationId: str
    CustomerFriendlyName: str
    Issuer: str | None
    OpenIDDiscoveryDocument: str | None
    ClientId: str
    ClientSecretSet: bool
    Status: str
    CreatedAt: str
    UpdatedAt: str


class SsoConfigurationOut(BaseModel):
    DisplayName: str | None
    Contacts: list[str]
    ID: str
    ServerID: str
    RedirectUri: str = Field(max_length=255, pattern=r"^(http://|https://).*")
    TextRecord: str | None
    Status: Literal["Active", "Inactive"]
    CreatedAt: str
    UpdatedAt: str
