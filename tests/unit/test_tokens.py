"""Tokens from a request compare with the expected one in constant time, and never raise."""

from __future__ import annotations

import pytest

from keyhall.security.tokens import same_token


@pytest.mark.parametrize("given", ["Ü", "%C3%9C", "\ud800", "\udcc3\udc9c", "\x00", "tok\u00e9n", "\U0001f600"])
def test_hostile_text_is_not_the_token(given: str) -> None:
    assert same_token(given, "token") is False
    assert same_token("token", given) is False


def test_equal_tokens_match_whatever_their_text() -> None:
    assert same_token("abc_-123", "abc_-123") is True
    assert same_token("Ü", "Ü") is True
    assert same_token("\ud800", "\ud800") is True


def test_lone_surrogates_do_not_collapse_into_one_another() -> None:
    assert same_token("\ud800", "\ud801") is False
    assert same_token("\udcc3\udc9c", "Ü") is False


@pytest.mark.parametrize(("given", "expected"), [(None, "t"), ("", "t"), ("t", None), ("t", ""), (None, None),
                                                 ("", "")])
def test_missing_or_empty_never_matches(given: str | None, expected: str | None) -> None:
    assert same_token(given, expected) is False
