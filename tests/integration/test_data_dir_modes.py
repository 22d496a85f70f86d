"""A data directory made by Keyhall is private: the directory 0700, the SQLite database (and its
-wal/-shm files) and the generated key file 0600, whatever the umask lets through. Checked on a
fresh directory made by the real ``keyhall`` command and a running ``keyhall serve``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from keyhall.security.secrets import write_key_file
from tests.support.peers import free_port
from tests.support.servers import KeyhallServer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def environ(data_dir: Path, **extra: str) -> dict[str, str]:
    """A first run: only the data directory is configured (no database URL, no secret keys)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHALL_")}
    env.update(KEYHALL_DATA_DIR=str(data_dir), KEYHALL_LOG_LEVEL="WARNING", KEYHALL_PURGE_INTERVAL_SECONDS="0",
               KEYHALL_DOMAIN_CHECK_INTERVAL_SECONDS="0", PYTHONUNBUFFERED="1", **extra)
    return env


def run_cli(home: Path, data_dir: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); from keyhall.cli import main; "
                           "sys.argv = ['keyhall', *sys.argv[1:]]; main()", *args],
                          cwd=home, env=environ(data_dir), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_a_fresh_data_directory_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    run_cli(tmp_path, data_dir, "org", "create", "Private Files")
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "secret_keys") == 0o600
    assert mode(data_dir / "keyhall.db") == 0o600
    # Nothing in the directory is readable by others, whatever SQLite left behind.
    for path in data_dir.iterdir():
        assert mode(path) & 0o077 == 0, f"{path.name}: {oct(mode(path))}"


def test_the_wal_files_of_a_running_server_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    server = KeyhallServer("modes", port, environ(data_dir, KEYHALL_PUBLIC_URL=f"http://127.0.0.1:{port}"), tmp_path)
    server.start()
    try:
        assert httpx.get(f"{server.url}/readyz", trust_env=False).status_code == 200
        wal, shm = data_dir / "keyhall.db-wal", data_dir / "keyhall.db-shm"
        assert wal.exists()
        assert shm.exists()
        assert mode(wal) == 0o600
        assert mode(shm) == 0o600
        assert mode(data_dir / "keyhall.db") == 0o600
        assert mode(data_dir) == 0o700
    finally:
        server.stop()


def test_a_rewritten_key_file_stays_private_even_over_a_stale_temporary_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_keys"
    stale = key_file.with_suffix(".tmp")
    stale.write_text("left over by a crash\n")
    stale.chmod(0o644)
    write_key_file(key_file, ["a" * 43 + "="])
    assert mode(key_file) == 0o600
