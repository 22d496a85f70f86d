"""SSO connections: the entity, the input every surface translates into, and the merge rules.

``apply_input`` is pure: given the stored connection (or none) and an input, it returns the
connection as it would be stored, or raises. The rules that need storage or the IdP (names and
domains taken, inspection, the 409 lock-out rule) live in ``connection_service``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from keyhall.core.connection_settings import (
    IDENTITY_FIELDS,
    INSPECTION_FIELDS,
    PROTOCOL_MODELS,
    SECRET_FIELDS,
    AttributeName,
    Branding,
    Contacts,
    DomainName,
    GroupMapping,
)
from keyhall.core.domains import PUBLIC_EMAIL_DOMAINS
from keyhall.core.presets import preset_for
from keyhall.core.secret_destinations import is_discovered_echo, moved_secrets
from keyhall.core.validation import validate_model
from keyhall.core.vocabulary import (
    SECRET_MASK,
    ConnectionStatus,
    GroupProvisioning,
    Protocol,
    Provider,
    UserProvisioning,
)
from keyhall.errors import Conflict, InvalidInput

ProfileField = Literal[
    "subject", "email", "email_verified", "name", "given_name", "family_name", "username",
    "picture", "locale", "phone_number", "groups",
]

READ_ONLY_FIELDS = frozenset(
    {"id", "organization_id", "is_verified", "created_at", "updated_at", "version", "redirect_uri",
     "acs_url", "sp_metadata_url", "discovered"}
)
NOT_NULLABLE = frozenset(
    {"protocol", "provider", "name", "status", "disable_email_password", "sync_profile",
     "require_verified_email", "user_provisioning", "group_provisioning", "attribute_mappings", "group_mappings",
     "domains"}
)


@dataclass
class Connection:
    id: str
    organization_id: str
    protocol: Protocol
    provider: Provider
    name: str
    display_name: str | None = None
    status: ConnectionStatus = ConnectionStatus.ACTIVE
    domains: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    branding: dict[str, str | None] = field(default_factory=dict)
    is_verified: bool = False
    disable_email_password: bool = False
    sync_profile: bool = True
    require_verified_email: bool = False  # refuse sign-ins whose email Keyhall cannot vouch for
    user_provisioning: UserProvisioning = UserProvisioning.AUTO
    group_provisioning: GroupProvisioning = GroupProvisioning.SYNC
    attribute_mappings: dict[str, str] = field(default_factory=dict)
    group_mappings: list[dict[str, str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    discovered: dict[str, Any] | None = None
    text_record: str | None = None
    # The id of the connection's published listing (its public facet: display name, contacts, text
    # record, with an id of its own); None while unpublished.
    listing_id: str | None = None
    version: int = 1
    created_at: datetime = field(default_factory=lambda: datetime.min)
    updated_at: datetime = field(default_factory=lambda: datetime.min)
    verified_at: datetime | None = None

    def secrets_set(self) -> dict[str, bool]:
        return {f"{name}_set": name in self.secrets for name in SECRET_FIELDS[self.protocol]}

    def snapshot(self) -> dict[str, Any]:
        """Every configurable value, secrets as set/unset flags: what audits diff."""
        return {
            "protocol": str(self.protocol), "provider": str(self.provider), "name": self.name,
            "display_name": self.display_name, "status": str(self.status), "domains": list(self.domains),
            "contacts": list(self.contacts), "branding": dict(self.branding),
            "is_verified": self.is_verified, "disable_email_password": self.disable_email_password,
            "sync_profile": self.sync_profile, "require_verified_email": self.require_verified_email,
            "user_provisioning": str(self.user_provisioning),
            "group_provisioning": str(self.group_provisioning),
            "attribute_mappings": dict(self.attribute_mappings), "group_mappings": list(self.group_mappings),
            "text_record": self.text_record,
            str(self.protocol): {**self.settings, **self.secrets_set()},
        }


class ConnectionInput(BaseModel):
    """What an owner may send, in Keyhall's own names; every field optional (partial update)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    protocol: Protocol | None = None
    provider: Provider | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    display_name: Annotated[str, StringConstraints(max_length=64)] | None = None
    status: ConnectionStatus | None = None
    domains: Annotated[list[DomainName], Field(max_length=100)] | None = None
    contacts: Contacts | None = None
    branding: Branding | None = None
    disable_email_password: bool | None = None
    sync_profile: bool | None = None
    require_verified_email: bool | None = None
    user_provisioning: UserProvisioning | None = None
    group_provisioning: GroupProvisioning | None = None
    attribute_mappings: dict[ProfileField, AttributeName] | None = None
    group_mappings: Annotated[list[GroupMapping], Field(max_length=100)] | None = None
    text_record: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    oidc: dict[str, Any] | None = None
    saml: dict[str, Any] | None = None
    ldap: dict[str, Any] | None = None

    @field_validator(*sorted(NOT_NULLABLE), mode="before")
    @classmethod
    def _no_null_where_a_value_is_needed(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value

    def given(self, name: str) -> bool:
        return name in self.model_fields_set

    def without(self, *names: str) -> ConnectionInput:
        """The same input with ``names`` not given at all (not even as null)."""
        kept = {k: v for k, v in self.model_dump(exclude_unset=True).items() if k not in names}
        return ConnectionInput.model_validate(kept)


@dataclass(frozen=True)
class Outcome:
    """The connection as it would be stored, and what the change touched."""

    connection: Connection
    identity_changed: bool
    needs_inspection: bool


def _merge_protocol_block(
    protocol: Protocol, stored: dict[str, Any], stored_secrets: dict[str, str], block: dict[str, Any] | None,
    *, replace_all: bool, discovered: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The protocol settings and secrets after ``block`` is merged in, validated as a whole.

    A secret follows its endpoint: when the merge changes where a stored secret would be sent
    (``SECRET_DESTINATIONS``), the stored one is dropped unless the block sends a new one, and
    sending the mask there is refused (it would keep the old secret for the new endpoint).
    """
    secret_names = SECRET_FIELDS[protocol]
    merged: dict[str, Any] = {} if replace_all else dict(stored)
    if replace_all and protocol is Protocol.OIDC and block is not None and "issuer" not in block \
            and stored.get("issuer") and block.get("discovery_url") == stored.get("discovery_url"):
        merged["issuer"] = stored["issuer"]  # learned from the same discovery document: not a change
    secrets = dict(stored_secrets)
    for key, value in (block or {}).items():
        if key in secret_names:
            if value == SECRET_MASK:
                continue  # the documented mask sent back: keep what is stored
            if value is None or value == "":
                secrets.pop(key, None)
            elif not isinstance(value, str):
                raise InvalidInput(f"{protocol}.{key}: must be a string", field=f"{protocol}.{key}")
            else:
                secrets[key] = value
        elif value is None:
            merged.pop(key, None)
        elif is_discovered_echo(protocol, key, value, stored, discovered):
            merged.pop(key, None)  # the discovered endpoint sent back as read: already in effect
        else:
            merged[key] = value
    model = validate_model(PROTOCOL_MODELS[protocol], {**merged, **secrets}, prefix=str(protocol))
    dumped = model.model_dump(mode="json")
    public = {k: v for k, v in dumped.items() if k not in secret_names}
    kept = {k: dumped[k] for k in secret_names if dumped.get(k)}
    if stored:
        for name, fields in moved_secrets(protocol, stored, public, discovered).items():
            _follow_endpoint(protocol, name, fields, (block or {}).get(name), public, kept,
                             was_stored=name in stored_secrets)
    return public, kept


def _follow_endpoint(protocol: Protocol, name: str, fields: list[str], sent: Any, public: dict[str, Any],
                     kept: dict[str, str], *, was_stored: bool) -> None:
    """``name``'s endpoint moved (``fields`` changed): keep the secret only if this request sent it."""
    path, moved = f"{protocol}.{name}", [f"{protocol}.{f}" for f in fields]
    if sent == SECRET_MASK:
        raise InvalidInput(
            f"{path}: the mask keeps the stored secret only while it goes to the same place; this request "
            f"changes {', '.join(moved)}, so send the secret for the new endpoint, or leave it out to clear it",
            field=path, details={"moved_by": moved},
        )
    if sent or not was_stored:
        return  # a new secret given for the new endpoint, or none to move
    kept.pop(name, None)  # stored for the old endpoint: never sent to the new one
    if protocol is Protocol.LDAP and public.get("bind_dn"):
        # A DN without a password is an unauthenticated bind (RFC 4513 §5.1.2): nothing to store.
        raise InvalidInput(
            f"{path}: this request changes {', '.join(moved)}, and the stored password is only sent to the "
            "directory it was given for; send bind_password for the new directory in the same request",
            field=path, details={"moved_by": moved},
        )


def _check_domains(domains: list[str]) -> list[str]:
    unique = list(dict.fromkeys(domains))
    for name in unique:
        if name in PUBLIC_EMAIL_DOMAINS:
            raise InvalidInput(
                f"domains: {name} is a public email domain and cannot route to one organization",
                field="domains",
            )
    return unique


def _changed(before: dict[str, Any], after: dict[str, Any], names: tuple[str, ...]) -> bool:
    return any(before.get(name) != after.get(name) for name in names)


def apply_input(
    existing: Connection | None,
    data: ConnectionInput,
    *,
    organization_id: str,
    now: datetime,
    replace_all: bool = False,
    new_id: str | None = None,
) -> Outcome:
    """Merge ``data`` into ``existing`` (or build a new connection, with ``new_id`` when the id was
    handed out before, as the setup portal does to show the IdP its URLs) and check every field rule."""
    if existing is None:
        protocol = data.protocol
        provider = data.provider or Provider.GENERIC
        preset = preset_for(provider)
        if protocol is None:
            if data.provider is None:
                raise InvalidInput("protocol: is required (oidc, saml or ldap)", field="protocol")
            protocol = preset.protocols[0]
        if protocol not in preset.protocols:
            raise InvalidInput(
                f"provider: {provider} does not offer {protocol} (it offers "
                f"{', '.join(str(p) for p in preset.protocols)})",
                field="provider",
            )
        block = data.oidc if protocol is Protocol.OIDC else data.saml if protocol is Protocol.SAML else data.ldap
        if block is None:
            raise InvalidInput(f"{protocol}: the {protocol} settings are required", field=str(protocol))
        block = {**preset.settings.get(protocol, {}), **block}
        base = Connection(
            id=new_id or str(uuid.uuid4()), organization_id=organization_id, protocol=protocol, provider=provider,
            name="", attribute_mappings=dict(preset.attribute_mappings.get(protocol, {})),
            created_at=now, updated_at=now,
        )
        replace_all = True
    else:
        base = existing
        protocol = existing.protocol
        if data.given("protocol") and data.protocol is not protocol:
            raise InvalidInput(
                "protocol: cannot change after creation; create a new connection instead", field="protocol"
            )
        if data.given("provider") and data.provider is not None and protocol not in preset_for(data.provider).protocols:
            raise InvalidInput(f"provider: {data.provider} does not offer {protocol}", field="provider")
        block = getattr(data, str(protocol))
    for other in Protocol:
        if other is not protocol and getattr(data, str(other)) is not None:
            raise InvalidInput(
                f"{other}: this connection uses {protocol}; send its settings as '{protocol}'", field=str(other)
            )

    settings, secrets = base.settings, base.secrets
    if block is not None or existing is None:
        settings, secrets = _merge_protocol_block(
            protocol, base.settings, base.secrets, block, replace_all=replace_all and block is not None,
            discovered=base.discovered,
        )

    conn = replace(base, settings=settings, secrets=secrets, updated_at=now)
    simple = ("provider", "status", "disable_email_password", "sync_profile", "require_verified_email",
              "user_provisioning", "group_provisioning", "display_name", "text_record")
    for name in simple:
        if data.given(name):
            setattr(conn, name, getattr(data, name))
    if data.given("name") and data.name is not None:
        conn.name = data.name
    if not conn.name:
        conn.name = data.display_name or f"{protocol}-{conn.id[:8]}"
    if data.given("domains"):
        conn.domains = _check_domains(list(data.domains or []))
    if data.given("contacts"):
        conn.contacts = [str(c) for c in data.contacts] if data.contacts else []
    if data.given("branding"):
        conn.branding = data.branding.model_dump() if data.branding else {}
    if data.given("attribute_mappings") and data.attribute_mappings is not None:
        conn.attribute_mappings = {**({} if existing is not None and replace_all else conn.attribute_mappings),
                                   **{str(k): v for k, v in data.attribute_mappings.items()}}
    if data.given("group_mappings"):
        conn.group_mappings = [m.model_dump() for m in data.group_mappings or []]

    before = {**(existing.settings if existing else {}), **(existing.secrets if existing else {})}
    after = {**conn.settings, **conn.secrets}
    identity_changed = existing is not None and _changed(before, after, IDENTITY_FIELDS[protocol])
    needs_inspection = existing is None or _changed(before, after, INSPECTION_FIELDS[protocol])
    if existing is not None and existing.disable_email_password and conn.disable_email_password:
        if identity_changed:
            raise Conflict(
                "this change would reset is_verified while disable_email_password is true, locking "
                "members out; send disable_email_password: false in the same request",
                details={"rule": "identity_change_while_password_disabled"},
            )
        if conn.status is ConnectionStatus.INACTIVE and existing.status is ConnectionStatus.ACTIVE:
            raise Conflict(
                "deactivating this connection while disable_email_password is true would lock members "
                "out; send disable_email_password: false in the same request",
                details={"rule": "deactivate_while_password_disabled"},
            )
    if identity_changed:
        conn.is_verified = False
        conn.verified_at = None
    if conn.disable_email_password and not conn.is_verified and (
        existing is None or data.given("disable_email_password") or identity_changed
    ):
        raise InvalidInput(
            "disable_email_password: can only be set to true once the connection is verified "
            "(is_verified turns true after the first successful sign-in through it)",
            field="disable_email_password",
        )
    return Outcome(connection=conn, identity_changed=identity_changed, needs_inspection=needs_inspection)


def connection_urls(public_url: str, connection: Connection) -> dict[str, str | None]:
    """The URLs an owner registers at the IdP (paths fixed by DESIGN.md)."""
    base = f"{public_url.rstrip('/')}/sso/{connection.id}"
    if connection.protocol is Protocol.OIDC:
        override = connection.settings.get("redirect_uri")
        return {"redirect_uri": override or f"{base}/oidc/callback", "acs_url": None, "sp_metadata_url": None}
    if connection.protocol is Protocol.SAML:
        return {"redirect_uri": None, "acs_url": f"{base}/saml/acs", "sp_metadata_url": f"{base}/saml/metadata"}
    return {"redirect_uri": None, "acs_url": None, "sp_metadata_url": None}


def sp_entity_id(public_url: str, connection: Connection) -> str:
    configured = connection.settings.get("sp_entity_id")
    if configured:
        return str(configured)
    return f"{public_url.rstrip('/')}/sso/{connection.id}/saml/metadata"
