"""Entry script: score PNG files with a tiny model on cheap image features.

Arguments: ``--model PATH`` (the .npz written by bench/make_data.py).
``run(paths)`` opens each file with PIL and returns ``["name: score", ...]``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from mlp import MLP
from PIL import Image

model: MLP | None = None


def load(model_path: str) -> MLP:
    return MLP(model_path)


def features(path: str) -> np.ndarray:
    """64 cheap features: the mean of each 7x7 block of a 28x28 image, scaled to 0..1,
    tiled 4 times (16 blocks -> 64 inputs)."""
    with Image.open(path) as img:
        pixels = np.asarray(img, dtype=np.float32)
    blocks = pixels.reshape(4, 7, 4, 7).mean(axis=(1, 3)).ravel() / 255.0
    return np.tile(blocks, 4)


def score(mlp: MLP, paths: list[str]) -> list[str]:
    if not paths:
        return []
    x = np.stack([features(p) for p in paths])
    scores = mlp(x)
    return [f"{os.path.basename(p)}: {s:.6f}" for p, s in zip(paths, scores)]


def init() -> None:
    global model
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, _ = parser.parse_known_args()
    model = load(args.model)


def run(mini_batch: list[str]) -> list[str]:
    return score(model, mini_batch)
