"""Shared tools for the dialect surfaces: translating field names in errors, parsing bodies.

A dialect speaks another vendor's field names. Core errors name Keyhall's fields
(``oidc.client_id``); ``translated_errors`` rewrites them into the dialect's names
(``config.client_id``) so callers see the names they sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from keyhall.core.connection_settings import PROTOCOL_MODELS
from keyhall.core.validation import invalid_from
from keyhall.errors import KeyhallError

M = TypeVar("M", bound=BaseModel)

Renamer = Callable[[str], str]


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
