"""``keyhall serve``'s public URL: it follows the listening address unless KEYHALL_PUBLIC_URL is set."""

from __future__ import annotations

import pytest

from keyhall.serving import public_url_for
from keyhall.settings import Settings


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("127.0.0.1", 8001, "http://127.0.0.1:8001"),
    ("0.0.0.0", 9000, "http://127.0.0.1:9000"),
    ("::", 9000, "http://127.0.0.1:9000"),
    ("::1", 8443, "http://[::1]:8443"),
    ("localhost", 8000, "http://localhost:8000"),
])
def test_the_public_url_follows_the_port(host: str, port: int, expected: str) -> None:
    assert public_url_for(Settings(_env_file=None), host, port) == expected  # type: ignore[call-arg]


def test_keyhall_public_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYHALL_PUBLIC_URL", "https://sso.example.com/")
    assert public_url_for(Settings(_env_file=None), "0.0.0.0", 8001) == "https://sso.example.com"  # type: ignore[call-arg]
