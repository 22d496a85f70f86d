"""Files and directories only Keyhall's own user may read: the data directory (0700 when Keyhall
creates it), the database file and the key file (0600).

The SQLite database holds sealed secrets and the key file holds what unseals them; neither should
be readable by other accounts on the machine, whatever the umask. SQLite creates its ``-wal`` and
``-shm`` files with the mode of the database file, so creating that file 0600 covers them too.
Existing files and directories keep the mode their owner gave them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` (its missing parents as usual) as a 0700 directory, unless it exists."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIRECTORY_MODE)
    except FileExistsError:
        return  # made meanwhile by another process: theirs
    os.chmod(path, DIRECTORY_MODE)  # mkdir's mode passes through the umask; this does not


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (its directory made private if missing)."""
    if path.exists():
        return
    make_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
