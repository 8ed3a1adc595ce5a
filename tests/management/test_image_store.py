"""The image store on disk: bounded by QR_DATA_MAX_BYTES, the least recently used images deleted
first, whether used from memory, from disk, or before a restart (the files' modification times)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.management.settings import ManagementSettings
from services.management.storage import LocalImageStore, usage
from shared.settings import ConfigError
from tests.management.conftest import create, serve

pytestmark = pytest.mark.anyio


def stored_file(root: Path, etag: str) -> Path | None:
    """The stored file of the image with this ETag (the first 32 hex digits of its key)."""
    found = list(root.glob(f"{etag.strip(chr(34))[:2]}/{etag.strip(chr(34))}*"))
    return found[0] if found else None


async def test_the_store_stays_under_its_bound_and_keeps_what_is_used(environ: dict[str, str]) -> None:
    bound = 12_000
    settings = ManagementSettings.from_env({**environ, "QR_DATA_MAX_BYTES": str(bound)})
    root = settings.qr_data_dir
    async for client in serve(settings):
        assert (await client.get("/console/")).status_code == 200  # its session key is kept there too
        code = (await create(client, target_url="https://example.org/")).json()
        image = f"/api/v1/qr/{code['id']}/image.png"
        favourite = await client.get(image, params={"size": 500})
        once = await client.get(image, params={"size": 510})
        sizes = [len(favourite.content), len(once.content)]
        for n in range(40):
            answer = await client.get(image, params={"size": 520 + 10 * n})
            assert answer.status_code == 200
            sizes.append(len(answer.content))
            assert usage(root)[1] <= bound, n
            # In use all along (from memory: no file system call), so never the least recent.
            assert (await client.get(image, params={"size": 500})).status_code == 200
        assert sum(sizes) > 2 * bound  # so the store had to drop images, and did
        files, size = usage(root)
        assert files < len(sizes)
        assert size <= bound
        assert stored_file(root, favourite.headers["etag"]) is not None
        assert stored_file(root, once.headers["etag"]) is None
        assert (root / ".console-secret").exists()  # not an image: neither counted nor pruned
        # A pruned image is rendered again, byte for byte.
        again = await client.get(image, params={"size": 510})
        assert again.content == once.content


def test_the_order_outlives_a_restart_and_a_hit_from_disk_renews_it(tmp_path: Path) -> None:
    first = LocalImageStore(tmp_path)
    keys = [f"{n:x}" * 64 for n in range(1, 5)]
    keys = [key[:64] for key in keys]
    for key in keys[:3]:
        first.put(key, b"x" * 1000)
    now = time.time()
    for age, key in zip((300, 200, 100), keys[:3], strict=True):  # oldest first
        os.utime(first._path(key), (now - age, now - age))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "ab").mkdir(exist_ok=True)
    (tmp_path / "ab" / ".tmp-half-written").write_bytes(b"y" * 5000)
    assert usage(tmp_path) == (3, 3000)

    # After a restart, with room for three: the oldest is read (used again), a fourth arrives.
    store = LocalImageStore(tmp_path, max_bytes=3000)
    assert store.get(keys[0]) == b"x" * 1000
    store.put(keys[3], b"x" * 1000)
    assert store.get(keys[1]) is None  # the least recently used went
    assert [store.get(key) is not None for key in (keys[0], keys[2], keys[3])] == [True, True, True]
    assert usage(tmp_path) == (3, 3000)
    assert (tmp_path / "notes.txt").exists()


def test_an_image_larger_than_the_whole_store_is_not_kept(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path, max_bytes=1000)
    store.put("a" * 64, b"x" * 600)
    store.put("b" * 64, b"x" * 1001)
    assert store.get("b" * 64) is None
    assert store.get("a" * 64) == b"x" * 600


def test_zero_means_no_bound(environ: dict[str, str], tmp_path: Path) -> None:
    settings = ManagementSettings.from_env({**environ, "QR_DATA_MAX_BYTES": "0"})
    assert settings.qr_data_max_bytes == 0
    assert ManagementSettings.from_env(environ).qr_data_max_bytes == 1024**3
    store = LocalImageStore(tmp_path, max_bytes=0)
    for n in range(20):
        store.put(f"{n:02x}" * 32, b"x" * 10_000)
    assert usage(tmp_path) == (20, 200_000)


@pytest.mark.parametrize("value", ["-1", "1GiB", "1e9", str(1 << 51)])
def test_a_bad_store_bound_stops_the_service(environ: dict[str, str], value: str) -> None:
    with pytest.raises(ConfigError, match="QR_DATA_MAX_BYTES"):
        ManagementSettings.from_env({**environ, "QR_DATA_MAX_BYTES": value})


async def test_a_store_hit_counts_as_a_use(environ: dict[str, str]) -> None:
    """Without the memory cache every request reads the store: each read renews the image."""
    settings = ManagementSettings.from_env({**environ, "QR_DATA_MAX_BYTES": "6000", "IMAGE_CACHE_BYTES": "0"})
    async for client in serve(settings):
        code = (await create(client, target_url="https://example.org/")).json()
        image = f"/api/v1/qr/{code['id']}/image.png"
        kept = await client.get(image, params={"size": 500})
        for n in range(20):
            await client.get(image, params={"size": 520 + 10 * n})
            await client.get(image, params={"size": 500})
        assert stored_file(settings.qr_data_dir, kept.headers["etag"]) is not None
        assert usage(settings.qr_data_dir)[1] <= 6000
