# The many-models copy-predictions step: a plain script (PythonScriptStep) that
# reads the forecasting step's output folder and writes a CSV with a header.
import argparse
import os

import pandas as pd

parser = argparse.ArgumentParser()
parser.add_argument("--parallel_run_step_output", required=True)
parser.add_argument("--output_dir", required=True)
parser.add_argument("--file_name", default="predictions.csv")
args = parser.parse_args()

frame = pd.read_parquet(
    os.path.join(args.parallel_run_step_output, "forecasts.parquet")
)
os.makedirs(args.output_dir, exist_ok=True)
frame.to_csv(os.path.join(args.output_dir, args.file_name), index=False)
print(f"copied {len(frame)} predictions to {args.output_dir}")
