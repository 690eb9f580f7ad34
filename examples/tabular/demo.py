"""`make demo`: score a generated table with a small model on an embedded cluster.

Generates a sample table (CSV, split over a few files) and a logistic-regression
model, then runs a ParallelRunStep on an embedded Dask cluster with a live
progress bar, and prints where the output is.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pandas as pd

import daskscore as ds

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(ROOT, "demo-output", "tabular")


def make_data(rows: int = 200_000, files: int = 4, features: int = 8) -> str:
    data_dir = os.path.join(WORK, "data")
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.default_rng(7)
    true_w = rng.normal(size=features)
    per_file = rows // files
    for i in range(files):
        path = os.path.join(data_dir, f"customers-{i:02d}.csv")
        if os.path.exists(path):
            continue
        x = rng.normal(size=(per_file, features)).astype("float32")
        frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(features)])
        frame.insert(0, "id", np.arange(i * per_file, (i + 1) * per_file))
        frame["truth"] = (x @ true_w > 0).astype("int8")
        frame.to_csv(path, index=False, float_format="%.5f")
    model_path = os.path.join(WORK, "model.npz")
    if not os.path.exists(model_path):
        # "train": least squares on a sample stands in for a real fit
        sample = pd.read_csv(os.path.join(data_dir, "customers-00.csv"), nrows=20_000)
        x = sample[[f"f{j}" for j in range(features)]].to_numpy()
        y = sample["truth"].to_numpy() * 2.0 - 1.0
        w, *_ = np.linalg.lstsq(x, y, rcond=None)
        np.savez(model_path, w=(w * 4).astype("float32"), b=np.float32(0.0))
    return data_dir


def main() -> int:
    data_dir = make_data()
    # a fresh run every time (the same step into the same folder would resume)
    shutil.rmtree(os.path.join(WORK, "out"), ignore_errors=True)
    table = ds.Dataset.Tabular.from_delimited_files(path=os.path.join(data_dir, "*.csv"))
    config = ds.ParallelRunConfig(
        entry_script="score.py",
        source_directory=os.path.join(HERE, "scripts"),
        mini_batch_size="1MB",
        error_threshold=10,
        output_action="append_row",
        append_row_file_name="scores.parquet",
        node_count=1,
        process_count_per_node=2,
        run_invocation_timeout=60,
    )
    step = ds.ParallelRunStep(
        name="tabular-demo",
        parallel_run_config=config,
        inputs=[table],
        output=os.path.join(WORK, "out"),
        arguments=["--model", os.path.join(WORK, "model.npz"), "--threshold", "0.5"],
    )
    result = step.run(progress=ds.TextProgress())
    print(f"\n{result.status}: {result.succeeded_items} rows scored, "
          f"{result.failed_items} failed, {result.mini_batches} mini-batches in "
          f"{result.elapsed_seconds:.1f} s")
    print(f"Output:  {result.output_file}")
    print(f"Logs:    {result.log_dir}/job_result.txt")
    scores = result.to_dask_dataframe()
    truth = ds.Dataset.Tabular.from_delimited_files(
        os.path.join(data_dir, "*.csv")).to_dask_dataframe()[["id", "truth"]]
    joined = scores.merge(truth, on="id").compute()
    accuracy = float((joined["label"] == joined["truth"]).mean())
    print(f"Accuracy against the generated labels: {accuracy:.3f}")
    return 0 if result.status == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
