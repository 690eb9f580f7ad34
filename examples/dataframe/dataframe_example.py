"""Inside a Dask pipeline: read Parquet with Dask, score lazily, join, write Parquet.

Generates a table of customers' features (Parquet files) and a second table of
their segments, then, on a local two-process Dask cluster::

    ddf = dd.read_parquet("features/")
    scores = ds.map_partitions(ddf, cfg, arguments=["--model", model])   # lazy
    scores.merge(segments, on="id").to_parquet("scored/")

and prints the mean probability per segment. Run it with
``python examples/dataframe/dataframe_example.py [WORK_DIR]``; the test suite
runs it on a small table.
"""

from __future__ import annotations

import os
import sys

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster

import daskscore as ds

HERE = os.path.dirname(os.path.abspath(__file__))


def make_data(work: str, rows: int, files: int = 4, features: int = 8) -> str:
    """Features in ``files`` Parquet files, segments in one, and a model."""
    rng = np.random.default_rng(11)
    features_dir = os.path.join(work, "features")
    os.makedirs(features_dir, exist_ok=True)
    per_file = rows // files
    for i in range(files):
        x = rng.normal(size=(per_file, features)).astype("float32")
        frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(features)])
        frame.insert(0, "id", np.arange(i * per_file, (i + 1) * per_file))
        frame.to_parquet(os.path.join(features_dir, f"part-{i}.parquet"), index=False)
    ids = np.arange(per_file * files)
    segments = pd.DataFrame({"id": ids, "segment": [f"s{i % 4}" for i in ids]})
    segments.to_parquet(os.path.join(work, "segments.parquet"), index=False)
    model = os.path.join(work, "model.npz")
    np.savez(model, w=rng.normal(size=features).astype("float32"), b=0.1)
    return model


def main(work: str, rows: int = 200_000) -> int:
    model = make_data(work, rows)
    cfg = ds.ParallelRunConfig(
        entry_script="score.py",
        source_directory=os.path.join(HERE, "scripts"),
        run_invocation_timeout=120,
        run_max_try=2,
    )
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        ddf = dd.read_parquet(os.path.join(work, "features"))
        segments = dd.read_parquet(os.path.join(work, "segments.parquet"))
        # lazy: nothing is scored yet; init() runs once per worker, never here
        with ds.scorer(cfg, arguments=["--model", model]) as score:
            scored = score(ddf).merge(segments, on="id")
            scored.to_parquet(os.path.join(work, "scored"))
        # shutdown() has run on every worker here
    result = pd.read_parquet(os.path.join(work, "scored"))
    print(f"Scored {len(result)} rows into {os.path.join(work, 'scored')}")
    means = result.groupby("segment")["probability"].mean()
    for segment, mean in means.items():
        print(f"  {segment}: mean probability {mean:.3f}")
    return 0


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.dirname(HERE)), "demo-output", "dataframe")
    sys.exit(main(target))
