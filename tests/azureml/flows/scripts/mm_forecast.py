# A forecasting entry script in the style of the many-models solution accelerator.
import argparse
import os
import pickle

import numpy as np
import pandas as pd


def init():
    global args
    parser = argparse.ArgumentParser("forecast")
    parser.add_argument("--models_dir", required=True)
    parser.add_argument("--horizon", type=int, required=True)
    args, _ = parser.parse_known_args()


def run(input_data):
    results = []
    for csv_file_path in input_data:
        data = pd.read_csv(csv_file_path)
        model_name = os.path.splitext(os.path.basename(csv_file_path))[0]
        with open(os.path.join(args.models_dir, model_name + ".pkl"), "rb") as f:
            model = pickle.load(f)
        last = int(data["week"].max())
        weeks = np.arange(last + 1, last + 1 + args.horizon, dtype=np.float64)
        forecast = model.predict(weeks.reshape(-1, 1))
        results.append(
            pd.DataFrame(
                {
                    "model": model_name,
                    "week": weeks.astype(int),
                    "forecast": forecast.round(3),
                }
            )
        )
    return pd.concat(results, ignore_index=True)
