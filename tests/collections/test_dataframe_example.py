"""examples/dataframe/dataframe_example.py on a small table.

Parquet in, scored, joined, Parquet out.

Every row is scored once with the example's model and joined with its segment.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples", "dataframe"))

import dataframe_example  # noqa: E402


def test_dataframe_example_scores_joins_and_writes_parquet(tmp_path, capsys):
    assert dataframe_example.main(str(tmp_path), rows=2_000) == 0
    assert "Scored 2000 rows" in capsys.readouterr().out
    got = pd.read_parquet(tmp_path / "scored").sort_values("id")
    assert list(got["id"]) == list(range(2_000))
    assert list(got["segment"]) == [f"s{i % 4}" for i in range(2_000)]
    # the example's own model, applied to every row exactly once
    model = np.load(tmp_path / "model.npz")
    features = pd.read_parquet(tmp_path / "features").sort_values("id")
    x = features[[f"f{j}" for j in range(8)]].to_numpy(dtype="float32")
    expected = 1.0 / (1.0 + np.exp(-(x @ model["w"] + float(model["b"]))))
    np.testing.assert_allclose(got["probability"].to_numpy(), expected, rtol=1e-5)
