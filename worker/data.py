"""Turn a validated dataset and a stage into fastai DataLoaders (presize, augment, normalize)."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
from fastai.vision.all import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    ImageBlock,
    IntToFloatTensor,
    Normalize,
    RandomResizedCropGPU,
    Resize,
    TransformBlock,
    aug_transforms,
    imagenet_stats,
)
from PIL import Image

from fitboard.app.core.datasets import ResolvedDataset
from fitboard.app.core.schemas import AugmentSpec, StageSpec
from fitboard.worker.presize_cache import PresizedCrop, load_cached

STATS_SAMPLE = 256  # training images read to estimate the dataset's channel statistics


def items_frame(ds: ResolvedDataset) -> pd.DataFrame:
    """One row per image: id, absolute path, class name, validation flag."""
    return pd.DataFrame({"image_id": [it.image_id for it in ds.items], "path": [str(it.path) for it in ds.items],
                         "label": [it.label for it in ds.items], "is_valid": [it.is_valid for it in ds.items]})


def dataset_stats(ds: ResolvedDataset, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a seeded sample of training images, on the 0..1 scale fastai feeds Normalize."""
    train = [it.path for it in ds.items if not it.is_valid]
    sample = random.Random(seed).sample(train, min(STATS_SAMPLE, len(train)))
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for path in sample:
        with Image.open(path) as im:
            px = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
        total += px.sum(0)
        total_sq += (px ** 2).sum(0)
        count += len(px)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    return mean.tolist(), std.tolist()


def norm_stats(normalize: str, ds: ResolvedDataset, seed: int):
    """The (mean, std) a recipe's normalize setting asks for, or None for no normalization."""
    if normalize == "imagenet":
        return [float(x) for x in imagenet_stats[0]], [float(x) for x in imagenet_stats[1]]
    if normalize == "dataset":
        return dataset_stats(ds, seed)
    return None


DEFAULT_AUGMENT = AugmentSpec()  # a recipe stored before the augment field existed trained with these


def augment_tfms(augment: AugmentSpec | None, size: int) -> list:
    """The batch transforms of a recipe's augment block, ending at size; None: only the resize from presize to size.

    As aug_transforms(size=size, min_scale=...) builds them, except that the crop to size is always its own step:
    with min_scale 1 fastai hands the size to the affine transforms, and with those all off nothing would resize."""
    # min_scale 1 with ratio 1 on square items (Resize crops them square) takes the whole image: a plain resize.
    crop = RandomResizedCropGPU(size, min_scale=augment.min_scale if augment else 1.0, ratio=(1, 1))
    if augment is None:
        return [crop]
    return [*aug_transforms(do_flip=augment.flip, flip_vert=augment.flip_vert, max_rotate=augment.max_rotate,
                            max_zoom=augment.max_zoom, max_lighting=augment.max_lighting, max_warp=augment.max_warp,
                            p_affine=augment.p_affine, p_lighting=augment.p_lighting), crop]


def make_dls(frame: pd.DataFrame, classes: list[str], stage: StageSpec, stats, num_workers: int | None = None, *,
             cached: bool = False, pin_memory: bool = False, prefetch: int | None = None,
             augment: AugmentSpec | None = DEFAULT_AUGMENT):
    """DataLoaders for one stage: items presized with Resize, then the recipe's batch augmentation to size, then
    Normalize. TTA runs these same batch transforms in training mode (fastai's learn.tta), so it follows the recipe.

    cached: the frame's paths are presize-cache entries (short side already at presize), so Resize only crops."""
    batch_tfms = augment_tfms(augment, stage.size)
    if stats is not None:
        batch_tfms.append(Normalize.from_stats(*stats))
    images = TransformBlock(type_tfms=load_cached, batch_tfms=IntToFloatTensor) if cached else ImageBlock
    block = DataBlock(blocks=(images, CategoryBlock(vocab=classes)),
                      get_x=ColReader("path"), get_y=ColReader("label"), splitter=ColSplitter("is_valid"),
                      item_tfms=[PresizedCrop(stage.presize) if cached else Resize(stage.presize)],
                      batch_tfms=batch_tfms)
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    if pin_memory:
        kwargs["pin_memory"] = True
    dls = block.dataloaders(frame, bs=stage.bs, **kwargs)
    if prefetch is not None:
        for dl in dls.loaders:
            dl.fake_l.prefetch_factor = prefetch  # fastai fixes torch's prefetch_factor as a class attribute
    return dls
