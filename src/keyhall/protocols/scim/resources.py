"""SCIM resources and messages (RFC 7643 §4, RFC 7644 §3.3-3.5), read and written with
``scim2-models``.

Everything here is pure: JSON in, models out, and back. Errors are ``InvalidInput`` carrying the
``scimType`` of RFC 7644 §3.12 in ``details["scim_type"]`` and the attribute in ``field``.

The service is tolerant where real IdPs need it (``POLICY``): attributes it does not know are
ignored rather than refused (Okta and Entra ID send custom ones), a ``remove`` carrying a
``value`` removes that value (Entra ID), and a ``replace`` through a path filter that matches
nothing creates the entry (Entra ID's ``emails[type eq "work"].value``). Operation names are
case-insensitive and booleans may arrive as the strings ``"True"``/``"False"`` (Entra ID): the
models accept both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import StringConstraints, TypeAdapter, ValidationError
from scim2_models import (
    Context,
    Email,
    EnterpriseUser,
    Group,
    GroupMember,
    GroupMembership,
    Meta,
    PatchOp,
    ResponseParameters,
    SCIMException,
    ScimPolicy,
    SearchRequest,
    User,
)

from keyhall.errors import InvalidInput


class DirectoryEmail(Email):
    """An address as the directory states it. scim2-models checks ``value`` as deliverable mail, which
    refuses what IdPs really send (Okta's own examples use ``*.local``); Keyhall vouches for no
    address a directory sends (``email_verified`` comes from sign-in), so any string will do."""

    value: Annotated[str | None, StringConstraints(max_length=320)] = None


class DirectoryUserResource(User[EnterpriseUser]):
    """The core User with the enterprise extension (RFC 7643 §4.1, §4.3), emails as stated."""

    emails: list[DirectoryEmail] | None = None  # type: ignore[assignment]


UserResource = DirectoryUserResource
GroupResource = Group

POLICY = ScimPolicy(unknown=ScimPolicy.Unknown.ignore, remove_value_as_filter=ScimPolicy.RemoveValue.apply,
                    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create)

#: attributes never stored with the resource: the server's own, and secrets (RFC 7643 §4.1.1
#: ``password`` is write-only; Keyhall's directory users sign in through SSO, so it is dropped)
NOT_STORED = ("id", "meta", "groups", "members", "password", "schemas")


def scim_invalid(message: str, *, scim_type: str, field: str | None = None) -> InvalidInput:
    return InvalidInput(message, field=field, details={"scim_type": scim_type})


def _scim_name(part: object) -> str:
    """A location part as SCIM names the attribute (``user_name`` → ``userName``)."""
    head, *rest = str(part).split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _from_validation(exc: ValidationError, scim_type: str | None = None) -> InvalidInput:
    """The first error, naming its attribute; its ``scimType`` is the one the models gave it
    (``mutability`` for a read-only attribute, ``invalidPath``, ...), else ``scim_type``, else
    ``invalidValue``."""
    errors: list[Any] = list(exc.errors())
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "is invalid"}
    ctx: dict[str, Any] = dict(first.get("ctx") or {})
    where = ".".join(_scim_name(part) for part in first.get("loc", ()) if not isinstance(part, int))
    where = where or str(ctx.get("field_name") or "")
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if first.get("type") == "required_error":
        message = message.replace("Field ", "").replace("'", "")
    if where:
        message = f"{where}: {message}"
    return scim_invalid(message, scim_type=str(ctx.get("scim_type") or scim_type or "invalidValue"),
                        field=where or None)


def from_scim_exception(exc: SCIMException) -> InvalidInput:
    """The models' error; when it wraps a validation error, that one's first problem, named."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ValidationError) and cause.errors():
        return _from_validation(cause, exc.scim_type)
    return scim_invalid(str(exc.detail), scim_type=exc.scim_type or "invalidValue")


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise scim_invalid("the body must be a JSON object", scim_type="invalidSyntax")
    return body


def parse_user(body: Any, *, replacement: bool = False) -> Any:
    """A User (with the enterprise extension) from a POST or PUT body (RFC 7644 §3.3, §3.5.1)."""
    ctx = Context.RESOURCE_REPLACEMENT_REQUEST if replacement else Context.RESOURCE_CREATION_REQUEST
    data = _object(body)
    try:
        return UserResource.model_validate(data, scim_ctx=ctx, scim_policy=POLICY)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    except SCIMException as exc:
        raise from_scim_exception(exc) from None


def parse_group(body: Any, *, replacement: bool = False) -> Group:
    ctx = Context.RESOURCE_REPLACEMENT_REQUEST if replacement else Context.RESOURCE_CREATION_REQUEST
    data = _object(body)
    try:
        return Group.model_validate(data, scim_ctx=ctx, scim_policy=POLICY)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    except SCIMException as exc:
        raise from_scim_exception(exc) from None


def parse_patch(body: Any, model: Any) -> Any:
    """A ``PatchOp`` message for resources of ``model`` (RFC 7644 §3.5.2)."""
    data = _object(body)
    try:
        return PatchOp[model].model_validate(data, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY)
    except ValidationError as exc:
        problem = _from_validation(exc)
        errors = exc.errors()
        named = errors and (errors[0].get("ctx") or {}).get("scim_type")
        if not named and "path" in problem.message.lower():  # a path the models could not read
            problem.details["scim_type"] = "invalidPath"
        raise problem from None
    except SCIMException as exc:
        raise from_scim_exception(exc) from None


def apply_patch(patch: Any, resource: Any) -> bool:
    """Apply every operation, all or none (scim2-models restores the resource on failure)."""
    try:
        return bool(patch.patch(resource, POLICY))
    except ValidationError as exc:
        raise _from_validation(exc) from None
    except SCIMException as exc:
        raise from_scim_exception(exc) from None


def stored_attributes(resource: Any) -> dict[str, Any]:
    """What is kept of a resource: its attributes as JSON, without the server's own or secrets."""
    data: dict[str, Any] = resource.model_dump(scim_ctx=None, mode="json", by_alias=True, exclude_none=True)
    return {key: value for key, value in data.items() if key not in NOT_STORED}


def load_user(attributes: dict[str, Any], *, id: str, active: bool | None, groups: list[tuple[str, str]],
              meta: Meta) -> Any:
    user = UserResource.model_validate({**attributes, "schemas": _user_schemas(attributes)}, scim_ctx=None,
                                       scim_policy=POLICY)
    user.id = id
    user.active = active
    user.meta = meta
    if groups:
        user.groups = [GroupMembership(value=gid, display=name, type="direct") for gid, name in groups]
    return user


#: datetimes as the models write them in ``meta`` (``Z`` for UTC), without building a ``Meta``
_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)
_ENTERPRISE = str(EnterpriseUser.__schema__)


def user_response(attributes: dict[str, Any], *, id: str, active: bool | None, groups: list[tuple[str, str]],
                  created: datetime, last_modified: datetime, location: str, version: int) -> dict[str, Any] | None:
    """The whole User as a response carries it (no ``attributes`` projection), straight from what is
    stored, which the models wrote and checked: what ``render(load_user(...))`` gives, without
    validating and serializing it all again. Empty top-level values are left out as the models do
    (RFC 7643 §2.5: an empty array is unassigned; Entra ID sends ``roles: []``); None when an empty
    value is stored deeper: the caller then takes ``load_user`` and ``render``."""
    body: dict[str, Any] = {"schemas": _user_schemas(attributes), "id": id}
    if "externalId" in attributes:
        body["externalId"] = attributes["externalId"]
    body["meta"] = {"resourceType": "User", "created": _DATETIME.dump_python(created, mode="json"),
                    "lastModified": _DATETIME.dump_python(last_modified, mode="json"), "location": location,
                    "version": f'W/"{version}"'}
    for key, value in attributes.items():
        if key in ("externalId", "active", "groups"):
            continue
        if key == _ENTERPRISE and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "schemas"}
            if not value:  # the extension stated with no attribute: the models decide what shows
                return None
        if isinstance(value, list):
            value = [item for item in value if item != {}]
        if value == [] or value == {}:
            continue
        if not _all_assigned(value):
            return None
        body[key] = value
    if active is not None:
        body["active"] = active
    if groups:
        body["groups"] = [{"value": gid, "display": name, "type": "direct"} for gid, name in groups]
    return body


def _all_assigned(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(v is not None and _all_assigned(v) for v in value.values())
    if isinstance(value, list):
        return bool(value) and all(v is not None and _all_assigned(v) for v in value)
    return True


def _user_schemas(attributes: dict[str, Any]) -> list[str]:
    schemas = [str(User.__schema__)]
    if str(EnterpriseUser.__schema__) in attributes:
        schemas.append(str(EnterpriseUser.__schema__))
    return schemas


def load_group(attributes: dict[str, Any], *, id: str, members: list[tuple[str, str | None]], meta: Meta,
               users_url: str) -> Group:
    group = Group.model_validate({**attributes, "schemas": [str(Group.__schema__)]}, scim_ctx=None,
                                 scim_policy=POLICY)
    group.id = id
    group.meta = meta
    group.members = [GroupMember(value=uid, display=name, type="User", ref=f"{users_url}/{uid}" if users_url else None)
                     for uid, name in members] or None
    return group


def meta(resource_type: str, *, created: datetime, last_modified: datetime, location: str, version: int) -> Meta:
    """``meta`` of RFC 7643 §3.1; ``version`` is a weak ETag of the stored version (RFC 7644 §3.14)."""
    return Meta(resource_type=resource_type, created=created, last_modified=last_modified, location=location,
                version=f'W/"{version}"')


def render(resource: Any, *, attributes: list[str] | None = None,
           excluded_attributes: list[str] | None = None) -> dict[str, Any]:
    """The resource as a response carries it, projected by ``attributes``/``excludedAttributes``
    (RFC 7644 §3.9)."""
    params = _parameters(attributes, excluded_attributes)
    try:
        data: dict[str, Any] = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
                                                   response_parameters=params, scim_policy=POLICY)
    except (SCIMException, ValueError) as exc:
        raise scim_invalid(f"attributes: {getattr(exc, 'detail', exc)}", scim_type="invalidValue",
                           field="attributes") from None
    return data


def _parameters(attributes: list[str] | None, excluded: list[str] | None) -> ResponseParameters[Any] | None:
    if not attributes and not excluded:
        return None
    try:
        return ResponseParameters(attributes=attributes or None, excluded_attributes=excluded or None)
    except (ValidationError, SCIMException, ValueError) as exc:
        raise scim_invalid(f"attributes: {exc}", scim_type="invalidValue", field="attributes") from None


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated ``attributes`` parameter as a list (RFC 7644 §3.4.2.5)."""
    if not value:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def primary_email(user: Any) -> str | None:
    """The address Keyhall keeps in its email column: the primary one, else the work one, else the first."""
    emails = list(user.emails or [])
    ranked = [e for e in emails if e.primary] + [e for e in emails if (e.type or "").lower() == "work"] + emails
    for email in ranked:
        if email.value:
            return str(email.value).lower()
    return None


@dataclass(frozen=True)
class SearchParams:
    """A query, from URL parameters or a ``SearchRequest`` body (RFC 7644 §3.4.2, §3.4.3)."""

    filter: str | None = None
    start_index: str | None = None
    count: str | None = None
    attributes: list[str] | None = None
    excluded_attributes: list[str] | None = None


def parse_search(body: Any) -> SearchParams:
    """A ``POST .../.search`` body; sorting is not supported (ServiceProviderConfig says so)."""
    data = _object(body) if body is not None else {}
    try:
        request: Any = SearchRequest.model_validate(data, scim_ctx=Context.SEARCH_REQUEST, scim_policy=POLICY)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    except SCIMException as exc:
        raise from_scim_exception(exc) from None
    return SearchParams(
        filter=str(request.filter) if request.filter is not None else None,
        start_index=str(request.start_index) if request.start_index is not None else None,
        count=str(request.count) if request.count is not None else None,
        attributes=[str(a) for a in request.attributes] if request.attributes else None,
        excluded_attributes=[str(a) for a in request.excluded_attributes] if request.excluded_attributes else None)
