"""Loader throughput on Cassava-sized photos: fastai's plain pipeline versus the presize cache (target >= 3x).

Writes the digits demo data as ~1,800 JPEGs of 800 x 600 with a photo-like texture (so decoding costs what a
photo costs), then, alternating in one run with the same num_workers, times one pass over the training set at
presize 460 / size 224 and presize 560 / size 448 for each pipeline. "loader" is what the loader processes deliver
(decode, presize, collate): on a GPU host the batch augmentation then runs on the GPU. "+ CPU aug" adds fastai's
batch augmentation on this CPU, as a CPU-only run would do it. First it times each stored format the cache could
use (raw uint8 array, JPEG q95, PNG). Usage: python bench/pipeline.py [--reps 2] [--workers N] [--images 1797]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from fastai.vision.all import Pipeline, Resize, ToTensor  # noqa: E402
from PIL import Image  # noqa: E402

from fitboard.app.core.demo_data import load_digits  # noqa: E402
from fitboard.app.core.schemas import StageSpec  # noqa: E402
from fitboard.worker.data import make_dls  # noqa: E402
from fitboard.worker.presize_cache import PresizeCache, PresizedCrop, load_cached  # noqa: E402

STAGES = (StageSpec(epochs=1, size=224, presize=460, bs=64), StageSpec(epochs=1, size=448, presize=560, bs=32))
W, H = 800, 600


def make_photo(job: tuple[int, bytes, int, str]) -> None:
    """One 800 x 600 JPEG: the digit enlarged and coloured over a noisy, graded background (q90, like a camera)."""
    i, pixels, label, path = job
    rng = np.random.default_rng(i)
    digit = np.frombuffer(pixels, dtype=np.uint8).reshape(8, 8)
    big = np.asarray(Image.fromarray(digit).resize((520, 520), Image.BILINEAR), dtype=np.float32) / 255
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.stack([90 + 60 * np.sin(xx / 97 + i), 120 + 50 * np.cos(yy / 61), 70 + 40 * np.sin((xx + yy) / 143)], -1)
    base[40:560, 140:660] += big[..., None] * np.array([120, 90, -40], dtype=np.float32)
    img = base + rng.normal(0, 18, base.shape)  # leaf-like fine texture: what makes a photo expensive to decode
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def write_dataset(folder: Path, limit: int, workers: int) -> pd.DataFrame:
    """The synthetic photos and their items frame (every fifth image in validation)."""
    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()[:limit]
    jobs = [(i, px, label, str(folder / f"{i:05d}.jpg")) for i, (px, label) in enumerate(digits)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(make_photo, jobs, chunksize=32))
    return pd.DataFrame({"image_id": [Path(j[3]).name for j in jobs], "path": [j[3] for j in jobs],
                         "label": [str(j[2]) for j in jobs], "is_valid": [i % 5 == 0 for i in range(len(jobs))]})


def one_pass(frame: pd.DataFrame, stage: StageSpec, workers: int, cached: bool, cpu_aug: bool) -> float:
    """Training images per second over one pass of the training loader."""
    dls = make_dls(frame, sorted(frame["label"].unique()), stage, None, workers, cached=cached)
    dl = dls.train
    if not cpu_aug:
        dl.after_batch = Pipeline([])  # after_batch (to float, augmentation) runs on the GPU on a GPU host
    n, t0 = 0, time.perf_counter()
    for xb, _ in dl:
        n += len(xb)
    return n / (time.perf_counter() - t0)


def format_table(paths: list[str], presize: int, root: Path) -> list[str]:
    """Per image: bytes stored and milliseconds to load + crop + tensor, for each format the cache could use."""
    lines, resize, crop, to_tensor = [], Resize(presize), PresizedCrop(presize), ToTensor()
    for fmt in ("npy", "jpeg", "png"):
        cset = PresizeCache(root / fmt, 1 << 40, fmt=fmt, workers=os.cpu_count() or 1).acquire(paths, presize)
        size = statistics.mean(os.path.getsize(p) for p in cset.paths)
        t0 = time.perf_counter()
        for p in cset.paths:
            to_tensor((crop if fmt == "npy" else resize)(load_cached(p), split_idx=0))
        ms = (time.perf_counter() - t0) / len(paths) * 1000
        lines.append(f"  {fmt:<5} {size / 1024:8.0f} KB/image  {ms:6.2f} ms/image (load + crop + tensor, one core)")
        cset.release()
    t0 = time.perf_counter()
    for p in paths:
        to_tensor(resize(load_cached(p), split_idx=0))
    ms = (time.perf_counter() - t0) / len(paths) * 1000
    lines.append(f"  plain {statistics.mean(os.path.getsize(p) for p in paths) / 1024:8.0f} KB/image  {ms:6.2f} "
                 f"ms/image (the original JPEG: decode + crop + resize + tensor)")
    return lines


def main() -> int:
    """Write the data, compare formats, then alternate plain and cached passes; print rates and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="loader processes (both pipelines)")
    parser.add_argument("--images", type=int, default=1797)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        frame = write_dataset(Path(tmp) / "photos", args.images, args.workers)
        print(f"wrote {len(frame)} photos of {W} x {H} in {time.perf_counter() - t0:.0f} s "
              f"({statistics.mean(os.path.getsize(p) for p in frame['path']) / 1024:.0f} KB each)", flush=True)
        print("stored formats at presize 460 (128 images):")
        print("\n".join(format_table(frame["path"].tolist()[:128], 460, Path(tmp) / "formats")), flush=True)
        cache = PresizeCache(Path(tmp) / "cache", 1 << 40, workers=args.workers)
        frames = {}
        for st in STAGES:
            t0 = time.perf_counter()
            cset = cache.acquire(frame["path"].tolist(), st.presize)
            frames[st.presize] = frame.assign(path=cset.paths)
            print(f"cache built at presize {st.presize}: {cset.built} images in {time.perf_counter() - t0:.1f} s "
                  f"({cache.size_bytes() / 2**30:.2f} GB cached so far)", flush=True)
        rates: dict[tuple, list[float]] = {}
        for rep in range(args.reps):
            for st in STAGES:
                for cpu_aug in (False, True):
                    for name, f, cached in (("plain", frame, False), ("cache", frames[st.presize], True)):
                        r = one_pass(f, st, args.workers, cached, cpu_aug)
                        rates.setdefault((st.presize, cpu_aug, name), []).append(r)
                        print(f"rep {rep} presize {st.presize}/size {st.size} {'+ CPU aug' if cpu_aug else 'loader':9}"
                              f" {name}: {r:7.1f} images/s", flush=True)
    print(f"\n=== summary ({time.perf_counter() - started:.0f} s, num_workers {args.workers}, "
          f"median of {args.reps}) ===")
    for st in STAGES:
        for cpu_aug in (False, True):
            p = statistics.median(rates[(st.presize, cpu_aug, "plain")])
            c = statistics.median(rates[(st.presize, cpu_aug, "cache")])
            label = "+ CPU aug" if cpu_aug else "loader   "
            target = "  (target >= 3x)" if not cpu_aug else ""
            print(f"presize {st.presize} / size {st.size} bs {st.bs} {label}: plain {p:7.1f} images/s, "
                  f"presize cache {c:7.1f} images/s, ratio {c / p:.2f}x{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
