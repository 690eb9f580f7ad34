"""Entry script of the tabular demo: a logistic-regression model over a table.

init() loads the model once per worker process; run() scores one mini-batch (a
pandas DataFrame) and returns one row per input row, keyed by the input's id.
"""

import argparse
import os

import numpy as np
import pandas as pd

import daskscore as ds

model = {}


def init():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threshold", type=float, default=0.5)
    args, _ = parser.parse_known_args()  # sys.argv[1:] are the step's arguments
    weights = np.load(args.model)
    model.update(w=weights["w"], b=float(weights["b"]), threshold=args.threshold)
    ds.EntryScript().logger.info("model loaded from %s in process %d", args.model,
                                 os.getpid())


def run(mini_batch: pd.DataFrame) -> pd.DataFrame:
    features = mini_batch[[c for c in mini_batch.columns if c.startswith("f")]]
    logits = features.to_numpy(dtype="float32") @ model["w"] + model["b"]
    probability = 1.0 / (1.0 + np.exp(-logits))
    return pd.DataFrame({
        "id": mini_batch["id"].to_numpy(),
        "probability": probability.round(6),
        "label": (probability >= model["threshold"]).astype("int8"),
    })
