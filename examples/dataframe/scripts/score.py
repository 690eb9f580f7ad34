"""Entry script of the dataframe example: a logistic-regression model.

init() loads the model once per worker process; run() scores one partition (a
pandas DataFrame) and returns one row per input row, keyed by its id.
"""

import argparse

import numpy as np
import pandas as pd

model = {}


def init():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, _ = parser.parse_known_args()
    weights = np.load(args.model)
    model.update(w=weights["w"], b=float(weights["b"]))


def run(mini_batch: pd.DataFrame) -> pd.DataFrame:
    features = mini_batch[[c for c in mini_batch.columns if c.startswith("f")]]
    logits = features.to_numpy(dtype="float32") @ model["w"] + model["b"]
    probability = 1.0 / (1.0 + np.exp(-logits))
    return pd.DataFrame({
        "id": mini_batch["id"].to_numpy(),
        "probability": probability.astype("float64"),
    })
