# An entry script in the style of the tutorial's batch_scoring.py: it parses raw
# sys.argv (no argparse) and joins its predictions onto the DataFrame's index.
import pickle
import sys

import pandas as pd

from daskscore import EntryScript


def init():
    global model, label_column
    argv = sys.argv[1:]
    model_path = argv[argv.index("--model_name") + 1]
    label_column = argv[argv.index("--label") + 1]
    EntryScript().logger.info("label column: %s", label_column)
    with open(model_path, "rb") as f:
        model = pickle.load(f)


def run(mini_batch):
    features = mini_batch[[c for c in mini_batch.columns if c.startswith("f")]]
    predictions = pd.Series(model.predict(features.values), name=label_column)
    return mini_batch[["id"]].join(predictions)
