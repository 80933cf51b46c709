"""Pretrained weights come only from the local torch cache: fail at once, with directions, when absent."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models import get_model_weights


class WeightsMissing(RuntimeError):
    """The pretrained weights a recipe asks for are not on this machine."""


def cached_weights_path(arch: str) -> tuple[Path, str]:
    """Where torchvision looks for an architecture's default weights, and where they come from."""
    url = get_model_weights(arch).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def ensure_cached(arch: str) -> Path:
    """Return the cached weights file, or raise WeightsMissing saying where to put it."""
    path, url = cached_weights_path(arch)
    if not path.is_file():
        raise WeightsMissing(
            f"pretrained weights for {arch} are not in the local torch cache and this machine does not download them: "
            f"copy {path.name} (published at {url}) to {path}, or point TORCH_HOME at a folder holding "
            f"hub/checkpoints/{path.name}, or set pretrained: false in the recipe")
    return path
