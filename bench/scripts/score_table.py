"""Entry script: score a tabular mini-batch with the MLP.

Arguments: ``--model PATH`` (the .npz written by bench/make_data.py).
``run(df)`` returns a DataFrame with ``id`` and ``score``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from mlp import MLP

FEATURES = [f"f{i:02d}" for i in range(64)]
model: MLP | None = None


def load(model_path: str) -> MLP:
    return MLP(model_path)


def score(mlp: MLP, frame: pd.DataFrame) -> pd.DataFrame:
    x = frame[FEATURES].to_numpy(dtype=np.float32)
    return pd.DataFrame({"id": frame["id"].to_numpy(), "score": mlp(x)})


def init() -> None:
    global model
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, _ = parser.parse_known_args()
    model = load(args.model)


def run(mini_batch: pd.DataFrame) -> pd.DataFrame:
    return score(model, mini_batch)
