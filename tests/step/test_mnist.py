"""The MNIST tutorial and the tabular example (examples/mnist/), on reduced data.

The real code path: TensorFlow trains a model here and loads it in every worker's
``init()``; the tutorial submits a pipeline to an embedded cluster from a
background thread and waits for it. Accuracy is measured against held-out labels.
"""

from __future__ import annotations

import os
import re
import sys

import pandas as pd
import pytest

import daskscore as ds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "mnist")
sys.path.insert(0, EXAMPLES)

import build_data  # noqa: E402
import tabular_example  # noqa: E402
import tutorial  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_build_data_writes_png_images_and_separate_labels(tmp_path):
    from PIL import Image

    image_dir, label_file = build_data.build_images(str(tmp_path), limit=30, shifts=2)
    names = sorted(os.listdir(image_dir))
    assert len(names) == 30 and all(n.endswith(".png") for n in names)
    with Image.open(os.path.join(image_dir, names[0])) as image:
        assert (image.size, image.mode) == ((28, 28), "L")
    labels = pd.read_csv(label_file)
    assert labels["file"].tolist() == names
    assert set(labels["label"]) <= set(range(10))
    # a smaller set built in the same place leaves no stray images
    build_data.build_images(str(tmp_path), limit=10)
    assert len(os.listdir(image_dir)) == 10


def test_tutorial_end_to_end_on_a_reduced_set(tmp_path, capsys):
    assert tutorial.main(str(tmp_path), limit=300) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"Accuracy: ([0-9.]+) on 300 held-out images", out)[1])
    assert accuracy >= 0.9, out
    assert "Step batch-mnist: Completed (300 items succeeded, 0 failed, 60 " \
           "mini-batches" in out
    assert "Processed" in out  # live progress from wait_for_completion

    ws = ds.Workspace.from_config(str(tmp_path))
    assert ds.Model(ws, "mnist").tags == {"pretrained": "mnist"}
    assert os.path.isfile(os.path.join(ds.Model(ws, "mnist").path, "saved_model.pb"))
    assert ds.Dataset.get_by_name(ws, "mnist_sample_data").version == 1
    (run,) = ds.Experiment(ws, "digit_identification").get_runs()
    assert run.status == "Completed"
    output = run.get_steps()[0].output_file
    assert output == os.path.join(str(tmp_path), ".daskscore", "data", "mnist",
                                  "results", "parallel_run_step.txt")
    with open(output) as f:
        lines = f.read().splitlines()
    assert len(lines) == 300
    assert re.fullmatch(r"digit_\d{5}\.png: \d", lines[0])

    # the same tutorial again: everything registered once, the step reused
    assert tutorial.main(str(tmp_path), limit=300) == 0
    out = capsys.readouterr().out
    assert "Step batch-mnist: reused the output of run " + run.id in out
    assert ws.dataset_versions("mnist_sample_data") == [1]
    assert [m.version for m in ds.Model.list(ws, "mnist")] == [1]


def test_tabular_example_scores_a_table_into_parquet_keyed_by_id(tmp_path, capsys):
    assert tabular_example.main(str(tmp_path)) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"Accuracy: ([0-9.]+)", out)[1])
    assert accuracy >= 0.9, out
    ws = ds.Workspace.from_config(str(tmp_path))
    (run,) = ds.Experiment(ws, "digits_tabular").get_runs()
    scored = pd.read_parquet(run.get_steps()[0].output_file)
    assert list(scored.columns) == ["id", "predicted", "probability"]
    table = pd.concat(pd.read_parquet(p)
                      for p in sorted((tmp_path / "table").glob("*.parquet")))
    assert scored["id"].tolist() == table["id"].tolist(), "input order, keyed by id"
    assert run.get_steps()[0].details["mini_batches"] > 2
