"""Encryption of stored secrets (client secrets, bind passwords, private keys).

Secrets are sealed with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``). The key list
comes from ``KEYHALL_SECRET_KEYS`` (comma-separated, newest first) or, when that is unset, from a
file in the data directory that is created on first run. New secrets are sealed with the newest
key; any listed key opens them, so a rotation is: put a new key first, then re-seal everything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from keyhall.errors import KeyhallError
from keyhall.security.private_files import FILE_MODE, make_private_dir


class SecretKeyError(KeyhallError):
    code = "secret_keys_invalid"


def parse_key_list(text: str) -> list[str]:
    keys = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    if not keys:
        raise SecretKeyError("no encryption key given")
    for index, key in enumerate(keys):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(f"encryption key #{index + 1} is not a urlsafe base64 32-byte key") from exc
    return keys


def new_key() -> str:
    return Fernet.generate_key().decode()


def load_or_create_key_file(path: Path) -> list[str]:
    """Read the key file, creating it (mode 0600, its directory 0700 if missing) with one fresh key when absent."""
    if path.exists():
        return parse_key_list(path.read_text())
    make_private_dir(path.parent)
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:  # another process created it first: use theirs
        return parse_key_list(path.read_text())
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return [key]


def write_key_file(path: Path, keys: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a left-over temporary file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(keys) + "\n")
    os.replace(tmp, path)


class SecretBox:
    """Seals and opens secret values; a sealed blob is a JSON object of named secrets."""

    source = "KEYHALL_SECRET_KEYS"

    def __init__(self, keys: list[str]):
        self._use(keys)

    def _use(self, keys: list[str]) -> None:
        self.keys = list(keys)
        self._fernet = MultiFernet([Fernet(key.encode()) for key in self.keys])

    def _reload(self) -> bool:
        """Pick up keys added since start (only a file-backed box can); True when they changed."""
        return False

    def seal(self, secrets: Mapping[str, str]) -> str | None:
        clean = {name: value for name, value in secrets.items() if value}
        if not clean:
            return None
        return self._fernet.encrypt(json.dumps(clean, sort_keys=True).encode()).decode()

    def open(self, blob: str | None) -> dict[str, str]:
        if not blob:
            return {}
        try:
            data = json.loads(self._fernet.decrypt(blob.encode()))
        except InvalidToken as exc:
            if not self._reload():
                raise SecretKeyError(f"a stored secret cannot be decrypted with the keys in {self.source}") from exc
            try:
                data = json.loads(self._fernet.decrypt(blob.encode()))
            except InvalidToken as again:
                raise SecretKeyError(f"a stored secret cannot be decrypted with the keys in {self.source}") from again
        return {str(k): str(v) for k, v in data.items()}

    def reseal(self, blob: str) -> str:
        """Re-encrypt a blob under the newest key (rotation)."""
        try:
            return self._fernet.rotate(blob.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError("a stored secret cannot be decrypted with the configured keys") from exc


class FileSecretBox(SecretBox):
    """A box whose keys live in the data directory's key file; it notices ``keyhall keys rotate``
    run by another process (a new key written first) and reloads instead of failing."""

    def __init__(self, path: Path):
        self.path = path
        self.source = str(path)
        super().__init__(load_or_create_key_file(path))
        self._mtime = path.stat().st_mtime_ns

    def _reload(self) -> bool:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._mtime:
            return False
        self._use(parse_key_list(self.path.read_text()))
        self._mtime = mtime
        return True

    def seal(self, secrets: Mapping[str, str]) -> str | None:
        self._reload()  # seal under the newest key, even one added while running
        return super().seal(secrets)
