"""The presize cache: every dataset image stored once with its short side at `presize`, shared by runs and workers.

fastai's `Resize(presize)` crops the largest centred (valid) or random (train) square and resizes it to presize.
Stored with the short side already at presize (aspect kept), the same crop needs no resize, and loading a raw
uint8 array (channels first, as the batch wants it) needs no JPEG decode: the per-epoch work left is one slice,
and batches collate from contiguous tensors.

Layout under the cache root: `v1-npy/entries/<presize>/<ab>/<key>.npy`, one file per (image path, size, mtime),
so a changed image gets a new entry and the others are reused; `v1-npy/sets/<set>.json` lists one (dataset file
list, presize) set. Two flock files per set: `.build` (one builder at a time; the others wait, then find nothing to
build) and `.use` (shared while a run reads the set; eviction takes it exclusively or skips the set).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from fastai.vision.augment import Resize
from fastai.vision.core import TensorImage
from PIL import Image

VERSION = 1
# Chosen by bench/pipeline.py (README "Speed"): raw uint8 loads ~10x faster than a JPEG q95 of the same pixels and
# PNG is slower than both; raw costs ~6x the disk of JPEG, which FITBOARD_CACHE_MAX_GB bounds.
FORMAT = "npy"
SUFFIX = {"npy": ".npy", "jpeg": ".jpg", "png": ".png"}
HEADER_SAMPLE = 16  # image headers read to estimate a set's size before building it
Progress = Callable[[int, int], None]  # (images done, images to build)


class CacheTooSmall(RuntimeError):
    """A set would not fit in the cache's size bound even alone."""


def entry_key(path: str, presize: int) -> str:
    """An entry's name: the image's absolute path, size and mtime, so an edited image gets a new entry."""
    st = os.stat(path)
    return hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{presize}".encode()).hexdigest()[:32]


def presized(im: Image.Image, presize: int) -> Image.Image:
    """The image with its short side at presize, aspect kept (bilinear, as fastai's Resize samples images)."""
    w, h = im.size
    scale = presize / min(w, h)
    size = (presize, max(presize, round(h * scale))) if w <= h else (max(presize, round(w * scale)), presize)
    return im if size == im.size else im.resize(size, Image.BILINEAR)


def write_entry(job: tuple[str, str, int, str]) -> int:
    """Presize one image into its entry (a temporary file renamed into place); returns the bytes written."""
    src, dest, presize, fmt = job
    with Image.open(src) as im:
        small = presized(im.convert("RGB"), presize)
    tmp = f"{dest}.{os.getpid()}.tmp"
    if fmt == "npy":
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(np.asarray(small, dtype=np.uint8).transpose(2, 0, 1)))
    elif fmt == "jpeg":
        small.save(tmp, format="JPEG", quality=95)
    else:
        small.save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, dest)  # readers see a whole file or none
    return os.path.getsize(dest)


def load_cached(path):
    """A cache entry (.npy) as a uint8 TensorImage (3, h, w); any image file as fastai's PILImage (so an exported
    model predicts on photos)."""
    from fastai.vision.core import PILImage, TensorImage

    path = str(path)
    if path.endswith(".npy"):
        return TensorImage(torch.from_numpy(np.load(path)))
    return PILImage.create(path)


class PresizedCrop(Resize):
    """fastai's Resize(presize) (random square on train, centred on valid) for cache entries: their short side is
    already presize, so the square is only sliced out; images fall back to Resize itself."""

    def encodes(self, x: TensorImage):
        h, w = x.shape[-2:]
        side = min(h, w)
        top, left = int(self.pcts[1] * (h - side)), int(self.pcts[0] * (w - side))
        # numpy copies the slice on this thread: torch's parallel copy stalls on a loaded loader process.
        out = TensorImage(torch.from_numpy(np.ascontiguousarray(x.numpy()[..., top:top + side, left:left + side])))
        if (side, side) != (self.size[1], self.size[0]):  # not made by this cache; resample as Resize would
            out = TensorImage(F.interpolate(out[None].float(), size=(self.size[1], self.size[0]), mode="bilinear",
                                            antialias=True)[0].round().clamp(0, 255).to(torch.uint8))
        return out


@dataclass
class CacheSet:
    """A built (dataset, presize) set, pinned against eviction until released."""

    paths: list[str]
    built: int
    total: int
    key: str
    _use_fd: int | None = field(default=None, repr=False)

    def describe(self) -> str:
        """What acquiring this set cost, for the run's speed block."""
        return "reused" if self.built == 0 else f"built {self.built} of {self.total} images"

    def release(self) -> None:
        """Let eviction take the set again."""
        if self._use_fd is not None:
            os.close(self._use_fd)
            self._use_fd = None


def _flock(path: Path, mode: int) -> int:
    """Open a lock file and take a flock on it (blocking unless mode has LOCK_NB); returns the descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        os.close(fd)
        raise
    return fd


class PresizeCache:
    """Presized copies of dataset images under one root, bounded by max_bytes (least recently used sets go)."""

    def __init__(self, root: Path, max_bytes: int, fmt: str = FORMAT, workers: int = 1):
        self.base = Path(root) / f"v{VERSION}-{fmt}"
        self.max_bytes, self.fmt, self.workers = max_bytes, fmt, max(1, workers)
        self.entries, self.sets = self.base / "entries", self.base / "sets"
        self.sets.mkdir(parents=True, exist_ok=True)

    def acquire(self, paths: list[str], presize: int, progress: Progress | None = None) -> CacheSet:
        """The cached entries of these images at presize, building only those missing; pinned until released."""
        keys = [entry_key(p, presize) for p in paths]
        dests = [self.entries / str(presize) / k[:2] / f"{k}{SUFFIX[self.fmt]}" for k in keys]
        key = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:24]
        use_fd = _flock(self.sets / f"{key}.use", fcntl.LOCK_SH)  # before building: our entries are never evicted
        try:
            build_fd = _flock(self.sets / f"{key}.build", fcntl.LOCK_EX)
            try:
                built = self._build(paths, dests, key, presize, progress)
            finally:
                os.close(build_fd)
            self.evict()
        except BaseException:
            os.close(use_fd)
            raise
        return CacheSet(paths=[str(d) for d in dests], built=built, total=len(paths), key=key, _use_fd=use_fd)

    def _build(self, paths: list[str], dests: list[Path], key: str, presize: int, progress: Progress | None) -> int:
        """Write the missing entries (the manifest first, so eviction counts them as referenced); returns how many."""
        manifest = self.sets / f"{key}.json"
        rel = [str(d.relative_to(self.entries)) for d in dests]
        missing = [i for i, d in enumerate(dests) if not d.is_file()]
        if missing:
            estimate = self._estimate_bytes([paths[i] for i in missing], presize)
            if estimate > self.max_bytes:
                raise CacheTooSmall(f"the presized images need about {estimate / 2**30:.1f} GB, more than the cache's "
                                    f"bound of {self.max_bytes / 2**30:.1f} GB (FITBOARD_CACHE_MAX_GB)")
            _write_json(manifest, {"presize": presize, "complete": False, "entries": rel})
            for d in {dests[i].parent for i in missing}:
                d.mkdir(parents=True, exist_ok=True)
            jobs = [(paths[i], str(dests[i]), presize, self.fmt) for i in missing]
            self._run_jobs(jobs, progress)
        if missing or not manifest.is_file():
            _write_json(manifest, {"presize": presize, "complete": True, "entries": rel})
        os.utime(manifest)  # last use: eviction takes the least recently used set first
        return len(missing)

    def _run_jobs(self, jobs: list[tuple], progress: Progress | None) -> None:
        """Presize the images, in a pool of processes when there are several CPUs to use."""
        done, total = 0, len(jobs)
        if self.workers == 1 or total < 64:
            results = map(write_entry, jobs)
            pool = None
        else:
            pool = ProcessPoolExecutor(self.workers, mp_context=get_context("fork"))
            results = pool.map(write_entry, jobs, chunksize=16)
        try:
            for _ in results:
                done += 1
                if progress is not None and (done % 64 == 0 or done == total):
                    progress(done, total)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _estimate_bytes(self, paths: list[str], presize: int) -> float:
        """Bytes the entries will take, from a sample of image headers (raw arrays; compressed formats ~1/6)."""
        step = max(1, len(paths) // HEADER_SAMPLE)
        per_image = []
        for p in paths[::step][:HEADER_SAMPLE]:
            with Image.open(p) as im:
                w, h = im.size
            per_image.append(presize * presize * max(w, h) / min(w, h) * 3)
        raw = sum(per_image) / len(per_image) * len(paths)
        return raw if self.fmt == "npy" else raw / 6

    def size_bytes(self) -> int:
        """Bytes the entries take now."""
        return sum(f.stat().st_size for f in self.entries.rglob("*") if f.is_file()) if self.entries.is_dir() else 0

    def evict(self) -> list[str]:
        """Delete least recently used sets not in use (and entries no set lists) until under the bound."""
        if self.size_bytes() <= self.max_bytes:
            return []
        fd = _flock(self.base / "evict.lock", fcntl.LOCK_EX)
        try:
            manifests = sorted(self.sets.glob("*.json"), key=lambda m: m.stat().st_mtime)
            listed = {m.stem: set(_read_json(m).get("entries", [])) for m in manifests}
            referenced = set().union(*listed.values())
            for f in [f for f in self.entries.rglob("*") if f.is_file()]:
                if str(f.relative_to(self.entries)) not in referenced:
                    f.unlink(missing_ok=True)  # an edited image's old entry, or a killed builder's leftovers
            evicted = []
            for m in manifests:
                if self.size_bytes() <= self.max_bytes:
                    break
                if self._evict_set(m, listed):
                    evicted.append(m.stem)
            return evicted
        finally:
            os.close(fd)

    def _evict_set(self, manifest: Path, listed: dict[str, set]) -> bool:
        """Remove one set and the entries no other set lists, unless a run holds it."""
        try:
            use_fd = _flock(self.sets / f"{manifest.stem}.use", fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # being read or built
        try:
            mine = listed.pop(manifest.stem)
            others = set().union(*listed.values())
            manifest.unlink(missing_ok=True)
            for rel in mine - others:
                (self.entries / rel).unlink(missing_ok=True)
            return True
        finally:
            os.close(use_fd)


def _write_json(path: Path, data: dict) -> None:
    """Write a JSON file atomically."""
    tmp = path.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    """A manifest, or {} when it vanished or is being replaced."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
