# A training entry script in the style of the many-models solution accelerator:
# one model per file (store and brand), trained and saved in init()-loaded folders.
import argparse
import os
import pickle

import numpy as np
import pandas as pd
from azureml.core import Run
from sklearn.linear_model import LinearRegression


def init():
    global args
    parser = argparse.ArgumentParser("split")
    parser.add_argument("--models_dir", required=True)
    parser.add_argument("--target_column", required=True)
    args, _ = parser.parse_known_args()
    os.makedirs(args.models_dir, exist_ok=True)


def run(input_data):
    results = []
    for csv_file_path in input_data:
        data = pd.read_csv(csv_file_path)
        model_name = os.path.splitext(os.path.basename(csv_file_path))[0]
        X = data[["week"]].to_numpy(dtype=np.float64)
        y = data[args.target_column].to_numpy(dtype=np.float64)
        model = LinearRegression().fit(X, y)
        Run.get_context().log_row("trained", model=model_name, rows=len(data))
        with open(os.path.join(args.models_dir, model_name + ".pkl"), "wb") as f:
            pickle.dump(model, f)
        results.append(f"{model_name},{len(data)}")
    return results
