"""Rules for tests that need a real peer (IdP, directory, DNS server, browser, database).

In CI (``CI=true``) a peer that is missing or fails to start is a failure, never a skip; on a
developer's machine the test is skipped with the reason so the rest of the suite still runs.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def peer_unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"peer unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"peer unavailable: {reason}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
