"""The base of the dialect surfaces: their registry entry, and the shared translation tools —
field names in errors, strict camelCase bodies, parsing, the calling key's organization, credentials.

A dialect speaks another vendor's field names. Core errors name Keyhall's fields
(``oidc.client_id``); ``translated_errors`` rewrites them into the dialect's names
(``config.client_id``) so callers see the names they sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from keyhall.api.deps import authenticate_and_charge, bearer_token
from keyhall.api.http import ErrorStyle
from keyhall.core import connection_service as service
from keyhall.core.access import Principal
from keyhall.core.connection_service import Context
from keyhall.core.connection_settings import PROTOCOL_MODELS
from keyhall.core.org_service import authenticate, authenticate_pair
from keyhall.core.organizations import Organization
from keyhall.core.ports import UnitOfWork
from keyhall.core.validation import field_path, invalid_from
from keyhall.core.vocabulary import Protocol
from keyhall.errors import InvalidInput, KeyhallError
from keyhall.runtime import Runtime

M = TypeVar("M", bound=BaseModel)

Renamer = Callable[[str], str]


@dataclass(frozen=True)
class Dialect:
    """One vendor-shaped API, as ``app.py`` installs it: its routes, and how its errors look.

    ``charged`` routes are authenticated and counted against the calling key by the app; a
    dialect whose credentials travel in the body (Luzmo) charges in its handler through
    ``body_principal``. ``public`` routes (logos) need no key.
    """

    name: str
    router: APIRouter
    error_style: ErrorStyle | None = None
    charged: bool = True
    public: tuple[APIRouter, ...] = ()


class StrictBody(BaseModel):
    """A request body in a vendor's wire names: unknown members and loose types are 400s."""

    model_config = ConfigDict(extra="forbid", strict=True)


def refuse_null(value: Any) -> Any:
    """A ``field_validator(..., mode="before")`` for optional members that may be absent but not null."""
    if value is None:
        raise ValueError("must not be null")
    return value


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def camelize(value: Any) -> Any:
    """snake_case keys → camelCase, recursively; other keys (binding URIs, kids) stay as they are."""
    if isinstance(value, dict):
        return {(camel(k) if isinstance(k, str) and re.fullmatch(r"[a-z0-9]+(?:_[a-z0-9]+)+", k) else k):
                camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def mapping_to_core(value: Any, keys: Mapping[str, str], field: str) -> dict[str, Any]:
    """An attribute mapping in a dialect's profile-field names (``keys``: its name → the core's)."""
    if not isinstance(value, dict):
        raise InvalidInput(f"{field}: must be an object", field=field)
    unknown = next((key for key in value if key not in keys), None)
    if unknown is not None:
        raise InvalidInput(f"{field}.{unknown}: is not a profile field (known: {', '.join(keys)})",
                           field=f"{field}.{unknown}")
    return {keys[key]: attribute for key, attribute in value.items()}


def key_organization(uow: UnitOfWork, ctx: Context, what: str, note: str = "") -> Organization:
    """The calling key's organization, for APIs whose resources live in the caller's tenant."""
    if ctx.principal.organization_id is None:
        raise InvalidInput(f"Authorization: {what} belong to the calling key's organization{note}; use an "
                           "organization's API key, not an instance-admin key", field="Authorization")
    return service.organization_for(uow, ctx, ctx.principal.organization_id)


def body_principal(request: Request, uow: UnitOfWork, runtime: Runtime, key: str | None,
                   token: str | None) -> Principal:
    """The caller named by a key id and secret carried in the body when either is given, else by the
    bearer token; charged to its budget like every API call (``authenticate_and_charge``)."""
    def attempt(reads: UnitOfWork) -> Principal:
        if key is not None or token is not None:
            return authenticate_pair(reads, key or "", token or "", runtime.clock())
        return authenticate(reads, bearer_token(request), runtime.clock())
    return authenticate_and_charge(request, runtime, uow, attempt)


def check_shape(protocol: Protocol, block: dict[str, Any], rename: Renamer) -> None:
    """Types and limits of a protocol block that will not be stored (absent required fields are
    fine), every problem named in the dialect's field names."""
    try:
        PROTOCOL_MODELS[protocol].model_validate({k: v for k, v in block.items() if v is not None})
    except ValidationError as exc:
        problems = [{"field": rename(field_path(tuple(e["loc"]), str(protocol))),
                     "message": str(e["msg"]).removeprefix("Value error, ")}
                    for e in exc.errors() if e["type"] != "missing"]
        if problems:
            first = problems[0]
            raise InvalidInput(f"{first['field']}: {first['message']}", field=first["field"],
                               details={"errors": problems}) from None


def prefix_renamer(mapping: dict[str, str]) -> Renamer:
    """Rename by longest matching dotted prefix: {"oidc.issuer": "identifier", "oidc": "config"}."""
    ordered = sorted(mapping.items(), key=lambda item: len(item[0]), reverse=True)

    def rename(path: str) -> str:
        for core_name, dialect_name in ordered:
            if path == core_name or path.startswith(core_name + ".") or path.startswith(core_name + "["):
                return dialect_name + path[len(core_name):]
        return path

    return rename


def rename_error(exc: KeyhallError, rename: Renamer) -> KeyhallError:
    field = exc.details.get("field")
    if isinstance(field, str):
        new = rename(field)
        if exc.message.startswith(field):
            exc.message = new + exc.message[len(field):]
            exc.args = (exc.message,)
        exc.details["field"] = new
        exc.field = new
    errors = exc.details.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("field"), str):
                item["field"] = rename(item["field"])
    return exc


@contextmanager
def translated_errors(rename: Renamer) -> Iterator[None]:
    """Core errors in a dialect's field names: the field, the message, and fields listed in details."""
    try:
        yield
    except KeyhallError as exc:
        raise _renamed_everywhere(exc, rename) from exc.__cause__


def parse_model(model: type[M], data: Any, *, prefix: str = "") -> M:
    """Validate ``data`` into ``model``; violations become InvalidInput naming the dialect's field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc, prefix=prefix) from None


CORE_PATH = re.compile(  # a core field path quoted inside a message (not a host name or URL)
    r"(?<![\w./:-])(?:oidc|saml|ldap)\.(?:"
    + "|".join(sorted({f for m in PROTOCOL_MODELS.values() for f in m.model_fields} | {"jwks_uri"}))
    + r")\b(?:\[\d+\])?"
)


def _renamed_everywhere(exc: KeyhallError, rename: Renamer) -> KeyhallError:
    exc.message = CORE_PATH.sub(lambda m: rename(m.group(0)), exc.message)
    renamed = rename_error(exc, rename)
    for key, value in renamed.details.items():
        if isinstance(value, list) and key != "errors":
            renamed.details[key] = [rename(v) if isinstance(v, str) and CORE_PATH.fullmatch(v) else v
                                    for v in value]
    renamed.args = (renamed.message,)
    return renamed


@contextmanager
def dialect_errors(rename: Renamer) -> Iterator[None]:
    """Core errors in a dialect's field names everywhere they appear (field, message, details),
    with the field named at the head of the message."""
    try:
        yield
    except KeyhallError as exc:
        renamed = _renamed_everywhere(exc, rename)
        if renamed.field and not renamed.message.startswith(renamed.field):
            renamed.message = f"{renamed.field}: {renamed.message}"
        renamed.args = (renamed.message,)
        raise renamed from exc.__cause__


def field_problems(exc: KeyhallError) -> dict[str, list[str]]:
    """Each field an error names, with its reasons (without the field's name in front)."""
    problems: dict[str, list[str]] = {}
    listed = exc.details.get("errors")
    for item in listed if isinstance(listed, list) else ():
        if isinstance(item, dict) and isinstance(item.get("field"), str):
            problems.setdefault(item["field"], []).append(str(item.get("message") or "is invalid"))
    field = exc.details.get("field")
    if not problems and isinstance(field, str):
        reason = exc.message.removeprefix(f"{field}:").strip() if exc.message.startswith(f"{field}:") else exc.message
        problems[field] = [reason or "is invalid"]
    return problems
