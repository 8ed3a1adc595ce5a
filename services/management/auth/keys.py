"""Secret keys kept in the data folder: made once (32 random bytes, mode 0600), then read back."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_BYTES = 32


def kept_key(path: Path) -> bytes:
    """The key in ``path``, made there the first time. Raises :class:`OSError` when the folder
    cannot hold it or the file is too short; each caller decides what that means for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole under another name, then linked into place: a second process that starts
        # meanwhile reads either no file or the whole key, never half of one.
        fresh = path.with_name(f"{path.name}.{os.getpid()}")
        descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(fresh, path)
        except FileExistsError:
            pass  # another process was first: its key it is
        finally:
            fresh.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise OSError(f"{path} holds fewer than {KEY_BYTES} bytes")
    return key
