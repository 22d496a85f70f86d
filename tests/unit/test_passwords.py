"""Password hashing: the dummy hash that makes an unknown account cost the same as a wrong password."""

from __future__ import annotations

import subprocess
import sys

from keyhall.security import passwords


def test_the_dummy_hash_has_the_hashers_parameters() -> None:
    # Same memory, time and parallelism as a real hash, so checking it costs what checking a real one costs.
    assert not passwords._hasher.check_needs_rehash(passwords._DUMMY_LITERAL)
    assert passwords._dummy() == passwords._DUMMY_LITERAL


def test_an_unknown_account_never_verifies_even_with_the_dummy_password() -> None:
    assert passwords.verify_password(None, "keyhall-dummy-password") is False
    assert passwords.verify_password("", "keyhall-dummy-password") is False
    stored = passwords.hash_password("correct horse battery")
    assert passwords.verify_password(stored, "correct horse battery") is True
    assert passwords.verify_password(stored, "wrong horse battery") is False


def test_importing_the_module_hashes_nothing() -> None:
    """Every process importing Keyhall used to hash at import (64 MiB, tens of milliseconds)."""
    code = ("import argon2\n"
            "calls = []\n"
            "real = argon2.PasswordHasher.hash\n"
            "argon2.PasswordHasher.hash = lambda self, *a, **k: calls.append(a) or real(self, *a, **k)\n"
            "import keyhall.security.passwords as p\n"
            "print(len(calls), p._dummy.cache_info().currsize)\n"
            "p.verify_password(None, 'x')\n"
            "print(len(calls), p._dummy.cache_info().currsize)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == ["0", "0", "0", "1"]
