"""Score iris rows with a pickled scikit-learn model (parallel job, mltable input)."""
import argparse
import pickle

import pandas as pd

model = None


def init():
    global model
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    args, _ = parser.parse_known_args()
    with open(args.model, "rb") as f:
        model = pickle.load(f)


def run(mini_batch: pd.DataFrame) -> pd.DataFrame:
    features = mini_batch[
        ["sepal_length", "sepal_width", "petal_length", "petal_width"]]
    return pd.DataFrame({"id": mini_batch["id"], "species": model.predict(features)})
