"""PKCE (RFC 7636): verifiers, S256 challenges, and checking a pair."""

from __future__ import annotations

import pytest

from keyhall.protocols.oidc.pkce import is_valid_verifier, new_code_verifier, s256_challenge, verify_s256

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_appendix_b_vector() -> None:
    assert s256_challenge(RFC_VERIFIER) == RFC_CHALLENGE
    assert verify_s256(RFC_VERIFIER, RFC_CHALLENGE)


def test_new_verifiers_are_valid_64_characters_and_distinct() -> None:
    verifiers = {new_code_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert len(verifier) == 64
        assert is_valid_verifier(verifier)
        assert verify_s256(verifier, s256_challenge(verifier))


@pytest.mark.parametrize(
    ("verifier", "valid"),
    [
        ("a" * 43, True),
        ("a" * 128, True),
        ("A-Z.a_z~09" * 5, True),
        ("a" * 42, False),
        ("a" * 129, False),
        ("a" * 42 + "+", False),
        ("a" * 42 + "/", False),
        ("a" * 42 + "=", False),
        ("a" * 42 + " ", False),
        ("a" * 43 + "\n", False),
        ("é" * 43, False),
        ("", False),
    ],
)
def test_verifier_syntax(verifier: str, valid: bool) -> None:
    assert is_valid_verifier(verifier) is valid


def test_wrong_verifier_does_not_match() -> None:
    assert not verify_s256(new_code_verifier(), RFC_CHALLENGE)
    assert not verify_s256(RFC_VERIFIER, RFC_CHALLENGE[:-1] + "d")
    assert not verify_s256(RFC_VERIFIER, RFC_VERIFIER)  # "plain" is not accepted as S256
    assert not verify_s256(RFC_VERIFIER, "")


def test_verifier_outside_section_4_1_never_matches() -> None:
    short = "abc"
    assert not verify_s256(short, "ungF9A5IbhR-Y6vYFNRFgLuf6uwJq4vM-Gt5jmbgx1A")  # SHA-256 of "abc", encoded
    with pytest.raises(ValueError, match="RFC 7636"):
        s256_challenge(short)


def test_challenge_with_non_ascii_characters_does_not_match() -> None:
    assert not verify_s256(RFC_VERIFIER, "é" * 43)
