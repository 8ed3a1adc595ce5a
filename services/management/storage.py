"""Where rendered images are kept: content-addressed, bounded in size, and only ever a cache.

Every image is derivable from the database (its payload is the code's fixed ``short_url``, its
options are in the key), so losing the store loses nothing: the same request renders the same
bytes again. Keys are SHA-256 hex digests and nothing else reaches the file system, so no request
can name a path outside the store.

The store on disk holds at most ``QR_DATA_MAX_BYTES`` of images: past it, the least recently used
ones are deleted as a new one is written. Use is tracked in memory (key -> size, least recently used
first), read once from the files' modification times, which a hit from disk renews; so the order
outlives a restart, and a hit costs no file system call beyond the read and that ``utime``. Hits
from the memory cache move an image to the recent end in memory only (no system call on the event
loop): after a restart such an image counts as last used when it was last read from disk. One
process writes a store (the management service runs one); another one's files are counted when
this one starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final, Protocol

from shared import settings as env

log = logging.getLogger(__name__)

_KEY = re.compile(r"[0-9a-f]{64}")
_FOLDER = re.compile(r"[0-9a-f]{2}")
# QR_DATA_MAX_BYTES: 1 GiB, over a million images of the default size (a 400 px PNG is under 1 KB, a
# 4096 px one about 10 KB, an SVG 3 KB): room for every image in use, a bound for a runaway.
DEFAULT_MAX_BYTES: Final = 1024**3
LARGEST_MAX_BYTES: Final = 1 << 50


def read_max_bytes(environ: Mapping[str, str]) -> int:
    """``QR_DATA_MAX_BYTES`` (0: no bound), for the service and for ``qr-manage status``."""
    return env.read_int(environ, "QR_DATA_MAX_BYTES", DEFAULT_MAX_BYTES, minimum=0, maximum=LARGEST_MAX_BYTES)


class ImageStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def touch(self, key: str) -> None:
        """The image was used (served from memory): keep it longer."""


def stored_images(root: Path) -> Iterator[tuple[str, int, float]]:
    """(key, bytes, modification time) of every image file under ``root``; nothing else there (the
    console's secret, a temporary file of a write in progress) counts."""
    try:
        folders = list(os.scandir(root))
    except FileNotFoundError:
        return
    for folder in folders:
        if not _FOLDER.fullmatch(folder.name) or not folder.is_dir(follow_symlinks=False):
            continue
        try:
            entries = list(os.scandir(folder.path))
        except FileNotFoundError:
            continue
        for entry in entries:
            if not _KEY.fullmatch(entry.name) or entry.name[:2] != folder.name:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # pruned meanwhile
                continue
            yield entry.name, info.st_size, info.st_mtime


def usage(root: Path) -> tuple[int, int]:
    """Images and their bytes in the store at ``root`` (what ``qr-manage status`` shows)."""
    files = size = 0
    for _, length, _ in stored_images(root):
        files += 1
        size += length
    return files, size


class LocalImageStore:
    """Files under ``root/ab/abcdef...``, written to a temporary name and renamed into place, at
    most ``max_bytes`` of them (0: no bound). Safe to use from several threads at once."""

    def __init__(self, root: Path, *, max_bytes: int = 0) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        self._used: OrderedDict[str, int] | None = None  # key -> bytes, least recently used first
        self._bytes = 0
        self.pruned = 0  # images deleted to stay under the bound, since the start

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError("an image key is a SHA-256 hex digest")
        return self.root / key[:2] / key

    def _index(self) -> OrderedDict[str, int]:
        """What is stored, by last use; read from the disk on first need, by one thread while the
        others wait (100,000 files: 0.8 s, 2 s with a cold page cache). Not under ``_lock``: a hit
        from memory meanwhile is simply not recorded."""
        used = self._used
        if used is None:
            with self._loading:
                if self._used is None:
                    found = sorted(stored_images(self.root), key=lambda image: image[2])
                    read = OrderedDict((key, size) for key, size, _ in found)
                    with self._lock:
                        self._used, self._bytes = read, sum(read.values())
                used = self._used
        assert used is not None
        return used

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        used = self._index()
        with self._lock:
            if key not in used:  # written by another process
                self._bytes += len(data)
            used[key] = len(data)
            used.move_to_end(key)
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
            os.utime(path)  # the order on disk, for the next start
        return data

    def touch(self, key: str) -> None:
        used = self._used
        if used is None:
            return
        with self._lock:
            if key in used:
                used.move_to_end(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self.max_bytes and len(data) > self.max_bytes:
            return  # larger than the whole store: served, not kept
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())  # never a name for bytes a power cut could lose
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        used = self._index()
        with self._lock:
            self._bytes += len(data) - used.get(key, 0)
            used[key] = len(data)
            used.move_to_end(key)
            victims = []
            while self.max_bytes and self._bytes > self.max_bytes and len(used) > 1:
                victim, size = used.popitem(last=False)
                self._bytes -= size
                victims.append(victim)
            self.pruned += len(victims)
        for victim in victims:
            self._path(victim).unlink(missing_ok=True)
        if victims:
            log.debug("image store pruned", extra={"images": len(victims), "bytes": self._bytes})


class MemoryCache:
    """The most recently used images, bounded by their total size (used from the event loop only)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes // 4:  # one huge image must not flush everything else
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._items[key] = data
        self.size += len(data)
        while self.size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.size -= len(evicted)
