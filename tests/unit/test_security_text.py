from __future__ import annotations

import pytest

from keyhall.security.text import has_control


@pytest.mark.parametrize("text", ["a\x00b", "\n", "x\ty", "\x1f", "end\x7f", "\r\n"])
def test_control_characters_and_del_are_found(text: str) -> None:
    assert has_control(text)


@pytest.mark.parametrize("text", ["", "plain", "é ü 日本", "\x80\x9f", "a b+c%20", "\u2028"])
def test_printable_text_is_not_refused(text: str) -> None:
    assert not has_control(text)
