"""Settings for a Keyhall under test: its own data directory, database and encryption key."""

from __future__ import annotations

from pathlib import Path

from keyhall.security.secrets import new_key
from keyhall.settings import Settings


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "secret_keys": new_key(),
        "allow_insecure_idp_urls": True,
        "public_url": "http://keyhall.test",
        "idp_timeout_seconds": 3.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]
