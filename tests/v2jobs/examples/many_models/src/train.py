"""Train one model per store (parallel job, partition_keys)."""
import argparse
import os
import pickle

import mltable  # noqa: F401 - many entry scripts import it and never use it
from sklearn.linear_model import LinearRegression

args = None


def init():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_folder")
    parser.add_argument("--note")
    args, _ = parser.parse_known_args()
    assert os.environ["MODEL_KIND"] == "linear"
    assert args.note == "one model per store", args.note


def run(mini_batch, mini_batch_context):
    store = mini_batch_context.partition_key_value["Store"]
    model = LinearRegression().fit(mini_batch[["Week"]], mini_batch["Sales"])
    os.makedirs(args.model_folder, exist_ok=True)
    with open(os.path.join(args.model_folder, f"model_{store}.pkl"), "wb") as f:
        pickle.dump(model, f)
    return [f"{store} {len(mini_batch)} {model.coef_[0]:.1f}"]
