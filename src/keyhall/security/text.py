"""Checks on text that arrives from browsers and products before it reaches a protocol."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a C0 control character or DEL (one regular-expression scan: a loop
    over the characters in Python cost more than the rest of a parameter's handling)."""
    return _CONTROL.search(text) is not None
