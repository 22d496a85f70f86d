"""Turning schema violations into ``InvalidInput`` errors that name the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from keyhall.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    parts: list[str] = [prefix] if prefix else []
    for item in loc:
        if item == "[key]":
            continue  # pydantic marks dict-key errors so; the key is already in the path
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def _clean_message(error: Any) -> str:
    message = str(error.get("msg", "is invalid"))
    if error.get("type") == "extra_forbidden":
        return "is not a known field"
    if error.get("type") == "missing":
        return "is required"
    return message.removeprefix("Value error, ")


def invalid_from(exc: ValidationError, *, prefix: str = "", rename: Callable[[str], str] | None = None) -> InvalidInput:
    """One InvalidInput for a pydantic error: the first problem in the message, all in details."""
    problems = []
    for error in exc.errors():
        path = field_path(tuple(error.get("loc", ())), prefix) or prefix or "body"
        if rename is not None:
            path = rename(path)
        problems.append({"field": path, "message": _clean_message(error)})
    first = problems[0]
    message = f"{first['field']}: {first['message']}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more)"
    return InvalidInput(message, field=first["field"], details={"errors": problems})


def validate_model(model: type[M], data: Any, *, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc, prefix=prefix) from None
