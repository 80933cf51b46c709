"""Pretrained weights in the local torch cache: look up, list, add, and download (verified) from publisher or mirror.

torchvision names each weights file `<arch>-<first hex digits of its SHA-256>.pth`; a file enters the cache only
when its content hashes to that prefix, so nothing made or damaged elsewhere can pass as the real weights.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import torch
from torchvision.models import get_model_weights

from fitboard.app.core.artifacts import copy_atomically
from fitboard.app.core.schemas import ARCHITECTURES

HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's rule for the hash prefix in a file name
CONNECT_TIMEOUT = 10.0  # seconds; an offline host fails at once instead of hanging
CHUNK = 1 << 20
_hash_memo: dict[tuple, bool | None] = {}


class WeightsMissing(RuntimeError):
    """The pretrained weights a recipe asks for are not on this machine."""


class WeightsRejected(ValueError):
    """A weights file whose content does not hash to the prefix in its name."""


def cache_dir() -> Path:
    """torch's checkpoint cache ($TORCH_HOME/hub/checkpoints), where torchvision looks for weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(arch: str) -> tuple[Path, str]:
    """Where torchvision looks for an architecture's default weights, and where they come from."""
    url = get_model_weights(arch).DEFAULT.url
    return cache_dir() / url.rsplit("/", 1)[-1], url


def arch_of(file_name: str) -> str | None:
    """The architecture whose default weights have this file name, or None."""
    for arch in ARCHITECTURES:
        if get_model_weights(arch).DEFAULT.url.rsplit("/", 1)[-1] == file_name:
            return arch
    return None


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_matches(path: Path) -> bool | None:
    """Whether the file's SHA-256 starts with the prefix in its name; None when the name carries no prefix."""
    m = HASH_PREFIX.search(path.name)
    if not m:
        return None
    st = path.stat()
    memo_key = (str(path), st.st_size, st.st_mtime_ns)
    if memo_key not in _hash_memo:  # hashing 100 MB files on every listing would be slow
        _hash_memo[memo_key] = sha256_of(path).startswith(m[1])
    return _hash_memo[memo_key]


def list_cached() -> list[dict]:
    """Every weights file in the torch cache: {"arch" (or None), "file", "size_bytes", "hash_ok" (True when its
    SHA-256 starts with the prefix in its name, False when not, None when the name has no prefix)}."""
    folder = cache_dir()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".pth", ".pt")) if folder.is_dir() \
        else []
    return [{"arch": arch_of(p.name), "file": p.name, "size_bytes": p.stat().st_size, "hash_ok": hash_matches(p)}
            for p in files]


def _expected_prefix(name: str) -> str:
    """The hash prefix a weights file name promises; refuses names without one."""
    m = HASH_PREFIX.search(name)
    if not m:
        raise WeightsRejected(f"{name}: the name carries no hash prefix (torchvision's files are named "
                              f"<arch>-<sha256 prefix>.pth), so its content cannot be checked")
    return m[1]


def add_file(source: Path) -> Path:
    """Copy a weights file downloaded elsewhere into the cache (atomically) after checking its hash prefix."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    prefix, digest = _expected_prefix(source.name), sha256_of(source)
    if not digest.startswith(prefix):
        raise WeightsRejected(f"{source.name}: its SHA-256 starts {digest[:len(prefix)]}, not {prefix} as its name "
                              f"says: a damaged or different file; not added")
    dest = cache_dir() / source.name
    copy_atomically(source, dest)
    return dest


def download(url: str, dest: Path, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Fetch url into dest: streamed to a hidden part file while hashing, renamed into place only when the content
    hashes to the prefix in dest's name; on any failure nothing is left behind."""
    prefix = _expected_prefix(dest.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    digest, done = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT) as resp, open(tmp, "wb") as out:
            total = int(resp.headers["Content-Length"]) if resp.headers.get("Content-Length") else None
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if not digest.hexdigest().startswith(prefix):
            raise WeightsRejected(f"{url}: the downloaded file's SHA-256 starts {digest.hexdigest()[:len(prefix)]}, "
                                  f"not {prefix} as {dest.name} says; refused and deleted")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def source_url(arch: str, mirror: str | None = None) -> str:
    """Where to fetch an architecture's weights: the mirror when one is set, else the publisher."""
    path, url = cached_weights_path(arch)
    return f"{mirror.rstrip('/')}/{path.name}" if mirror else url


def pull(arch: str, mirror: str | None = None, progress=None) -> Path:
    """Download an architecture's default weights into the cache (verified); returns the cached file."""
    path, _ = cached_weights_path(arch)
    return download(source_url(arch, mirror), path, progress)


def ensure_cached(arch: str, download: bool = False, mirror: str | None = None, note=None) -> Path:
    """Return the cached weights file; when absent, download it once if allowed, else raise WeightsMissing."""
    path, url = cached_weights_path(arch)
    if path.is_file():
        return path
    reason = "this machine does not download them (FITBOARD_DOWNLOAD_WEIGHTS is off)"
    if download:
        src = source_url(arch, mirror)
        if note is not None:
            note(f"downloading pretrained weights for {arch} from {src}")
        try:
            return pull(arch, mirror)
        except (OSError, urllib.error.URLError, WeightsRejected) as exc:
            reason = f"downloading them from {src} failed ({getattr(exc, 'reason', None) or exc})"
    raise WeightsMissing(
        f"pretrained weights for {arch} are not in the local torch cache and {reason}: "
        f"copy {path.name} (published at {url}) to {path} or run `fitboard weights add FILE` / "
        f"`fitboard weights pull {arch}`, or point TORCH_HOME at a folder holding "
        f"hub/checkpoints/{path.name}, or set pretrained: false in the recipe")
