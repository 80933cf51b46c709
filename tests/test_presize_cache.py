"""The presize cache: same crops as fastai's Resize, reuse, a safe concurrent build, eviction and invalidation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastai.vision.all import PILImage, Resize, ToTensor
from PIL import Image

from fitboard.app.core.schemas import StageSpec
from fitboard.worker.data import make_dls
from fitboard.worker.presize_cache import PresizeCache, PresizedCrop, load_cached

PRESIZE = 48


def _photo(path: Path, i: int, size=(96, 72)) -> str:
    """A landscape (or portrait) image with smooth structure, so two resampling orders agree closely."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 9 + i), 128 + 100 * np.cos(yy / 7), (xx + yy + 20 * i) % 256], -1)
    Image.fromarray(img.astype(np.uint8)).save(path, quality=95)
    return str(path)


@pytest.fixture
def photos(tmp_path) -> list[str]:
    """40 JPEGs: landscape and portrait, of a few sizes."""
    folder = tmp_path / "photos"
    folder.mkdir()
    sizes = [(96, 72), (72, 96), (120, 64), (50, 50)]
    return [_photo(folder / f"{i:03d}.jpg", i, sizes[i % 4]) for i in range(40)]


def _cache(tmp_path, max_bytes: int = 1 << 30) -> PresizeCache:
    return PresizeCache(tmp_path / "cache", max_bytes)


def test_cached_crops_match_plain_resize_on_validation_and_training(photos, tmp_path):
    cset = _cache(tmp_path).acquire(photos, PRESIZE)
    to_tensor = ToTensor()
    diffs = []
    for src, entry in zip(photos, cset.paths):
        plain = to_tensor(Resize(PRESIZE)(PILImage.create(src), split_idx=1))
        cached = PresizedCrop(PRESIZE)(load_cached(entry), split_idx=1)
        assert tuple(cached.shape) == tuple(plain.shape) == (3, PRESIZE, PRESIZE) and cached.dtype == plain.dtype
        diffs.append((cached.float() - plain.float()).abs().mean().item())
    assert max(diffs) < 4.0  # out of 255: resize-then-crop vs crop-then-resize, nothing more
    # Training crops: random squares; over many draws the same pixel statistics as the plain pipeline.
    rng_means = {"plain": [], "cached": []}
    import random
    random.seed(0)
    for _ in range(5):
        for src, entry in zip(photos, cset.paths):
            rng_means["plain"].append(to_tensor(Resize(PRESIZE)(PILImage.create(src), split_idx=0)).float().mean())
            rng_means["cached"].append(PresizedCrop(PRESIZE)(load_cached(entry), split_idx=0).float().mean())
    assert abs(np.mean(rng_means["plain"]) - np.mean(rng_means["cached"])) < 2.0
    assert abs(np.std(rng_means["plain"]) - np.std(rng_means["cached"])) < 2.0
    cset.release()


def test_cached_loaders_keep_classes_shapes_and_value_range(photos, tmp_path):
    frame = pd.DataFrame({"image_id": [Path(p).name for p in photos], "path": photos,
                          "label": [str(i % 3) for i in range(len(photos))], "is_valid": [i % 4 == 0 for i in
                                                                                        range(len(photos))]})
    cset = _cache(tmp_path).acquire(photos, PRESIZE)
    stage = StageSpec(epochs=1, size=32, presize=PRESIZE, bs=8)
    plain = make_dls(frame, ["0", "1", "2"], stage, None, 0)
    cached = make_dls(frame.assign(path=cset.paths), ["0", "1", "2"], stage, None, 0, cached=True)
    for a, b in ((plain.train, cached.train), (plain.valid, cached.valid)):
        assert sorted(a.items["label"]) == sorted(b.items["label"])  # same class balance in each split
        xa, ya = a.one_batch()
        xb, yb = b.one_batch()
        assert xa.shape == xb.shape == (8, 3, 32, 32) and ya.shape == yb.shape
        assert 0 <= float(xb.min()) and float(xb.max()) <= 1 and float(xb.std()) > 0.05
    cset.release()


def test_second_acquire_builds_nothing(photos, tmp_path):
    cache = _cache(tmp_path)
    first = cache.acquire(photos, PRESIZE)
    mtimes = [os.stat(p).st_mtime_ns for p in first.paths]
    second = cache.acquire(photos, PRESIZE)
    assert (first.built, second.built) == (len(photos), 0) and second.describe() == "reused"
    assert second.paths == first.paths and [os.stat(p).st_mtime_ns for p in second.paths] == mtimes
    first.release()
    second.release()


BUILD = """
import sys, time
from pathlib import Path
from fitboard.worker.presize_cache import PresizeCache
paths = sys.argv[3:]
while time.time() < float(sys.argv[2]):
    time.sleep(0.005)
print(PresizeCache(Path(sys.argv[1]), 1 << 30).acquire(paths, 48).built)
"""


def test_two_processes_building_at_once_make_one_complete_cache(photos, tmp_path):
    root, start = tmp_path / "cache", time.time() + 3  # both start building at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(root), str(start), *photos], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[1]) for _ in range(2)]
    built = sorted(int(p.communicate(timeout=120)[0].strip()) for p in procs)
    assert built == [0, len(photos)]  # one built everything; the other waited for it and built nothing
    manifests = list((root / "v1-npy" / "sets").glob("*.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["complete"] is True
    entries = [root / "v1-npy" / "entries" / rel for rel in json.loads(manifests[0].read_text())["entries"]]
    for entry in entries:
        arr = np.load(entry)
        assert arr.dtype == np.uint8 and arr.shape[0] == 3 and min(arr.shape[1:]) == PRESIZE
    assert not list(root.rglob("*.tmp"))


def test_eviction_takes_the_least_recently_used_set_not_one_in_use(photos, tmp_path):
    probe = _cache(tmp_path / "probe")
    one_set = sum(os.path.getsize(p) for p in probe.acquire(photos, PRESIZE).paths)
    cache = _cache(tmp_path, max_bytes=int(one_set * 2.5))  # room for two sets of about this size, not three
    a = cache.acquire(photos, 40)
    a.release()
    b = cache.acquire(photos, PRESIZE)  # held: in use
    c = cache.acquire(photos, 52)
    assert cache.size_bytes() <= cache.max_bytes
    assert not any(Path(p).exists() for p in a.paths)  # least recently used and free: evicted
    assert all(Path(p).exists() for p in b.paths + c.paths)
    again = cache.acquire(photos, 40)
    assert again.built == len(photos)  # an evicted set is rebuilt when asked for again
    for s in (b, c, again):
        s.release()


def test_a_changed_image_rebuilds_only_its_entry(photos, tmp_path):
    cache = _cache(tmp_path)
    first = cache.acquire(photos, PRESIZE)
    _photo(Path(photos[3]), 99, size=(64, 96))  # new content and shape
    os.utime(photos[3], ns=(time.time_ns(), time.time_ns() + 10**9))
    second = cache.acquire(photos, PRESIZE)
    assert second.built == 1
    changed = [i for i, (x, y) in enumerate(zip(first.paths, second.paths)) if x != y]
    assert changed == [3]
    assert np.load(second.paths[3]).shape == (3, 72, PRESIZE)  # portrait now: short side at presize
    first.release()
    second.release()
