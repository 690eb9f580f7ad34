"""Entry script of the tabular example: classify digits given as 64 pixel columns.

``init()`` loads the registered scikit-learn model; ``run(mini_batch)`` gets a
pandas DataFrame (``id`` and ``p00``..``p63``) and returns one row per input row,
keyed by ``id``, so the output can be joined back to anything else about it.
"""

import os

import joblib
import pandas as pd

import daskscore as ds

g_model = None


def init():
    global g_model
    model_dir = ds.Model.get_model_path("digits-sklearn")
    g_model = joblib.load(os.path.join(model_dir, "model.joblib"))


def run(mini_batch):
    features = mini_batch[[f"p{i:02d}" for i in range(64)]].to_numpy()
    probabilities = g_model.predict_proba(features)
    return pd.DataFrame({
        "id": mini_batch["id"].to_numpy(),
        "predicted": g_model.classes_[probabilities.argmax(axis=1)],
        "probability": probabilities.max(axis=1).round(4),
    })
