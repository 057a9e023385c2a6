"""The salt that hashes session ids of kept out-of-scope messages.

From ``SWITCHBOARD_CLASSIFICATION_DISCOVERY_SALT_FILE`` when set (share one file between
replicas so a session hashes alike everywhere), else ``<data_dir>/discovery.salt``,
created on first use with 32 random bytes and mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SALT_BYTES = 32


def load_or_create_salt(path: Path) -> bytes:
    """The salt in ``path``; a new random one written there (0600) when it is absent."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(SALT_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another replica won the race: use its salt
        return path.read_bytes()
    try:
        os.write(fd, salt)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)
    return salt
