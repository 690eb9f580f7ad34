"""Tabular scoring: a scikit-learn model scores a Parquet table into Parquet, by id.

The same workspace flow as the image tutorial, for rows instead of files: the
held-out digits become a table (an ``id`` column and 64 pixel columns, in two
Parquet files), a logistic regression trained on the other half is registered as
a model, and a ParallelRunStep scores the table in mini-batches of about 24 KB
into ``digit_scores.parquet`` (columns ``id``, ``predicted``, ``probability``,
in input order). The labels stay in their own table and are joined by ``id`` at
the end to measure the accuracy.

``python examples/mnist/tabular_example.py [FOLDER]`` (default
``demo-output/mnist-tabular``).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

import daskscore as ds

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FOLDER = os.path.join(os.path.dirname(os.path.dirname(HERE)), "demo-output",
                              "mnist-tabular")


def build_table(folder: str, files: int = 2) -> tuple[str, str]:
    """The held-out digits as Parquet tables; returns (table folder, labels file)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    test = order[len(order) // 2:]
    frame = pd.DataFrame(digits.data[test].astype("float32"),
                         columns=[f"p{i:02d}" for i in range(64)])
    frame.insert(0, "id", test.astype("int64"))
    table_dir = os.path.join(folder, "table")
    os.makedirs(table_dir, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[rows].to_parquet(os.path.join(table_dir, f"digits-{i:02d}.parquet"),
                        index=False, row_group_size=100)
    labels = os.path.join(folder, "labels.parquet")
    pd.DataFrame({"id": test, "label": digits.target[test]}).to_parquet(labels)
    return table_dir, labels


def train_model(folder: str) -> str:
    """A logistic regression on the training half, saved with joblib; its folder."""
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    model_dir = os.path.join(folder, "sk_model")
    path = os.path.join(model_dir, "model.joblib")
    if not os.path.exists(path):
        digits = load_digits()
        order = np.random.default_rng(0).permutation(len(digits.target))
        train = order[: len(order) // 2]
        model = LogisticRegression(max_iter=2000)
        model.fit(digits.data[train], digits.target[train])
        os.makedirs(model_dir, exist_ok=True)
        joblib.dump(model, path)
    return model_dir


def main(folder: str) -> int:
    table_dir, label_file = build_table(folder)
    ds.Workspace(os.path.join(folder, ".daskscore")).write_config(folder)
    ws = ds.Workspace.from_config(folder)

    store = ds.Datastore.register_local(ws, "digits_store", folder, overwrite=True)
    table = ds.Dataset.Tabular.from_parquet_files(store.path("table/*.parquet"))
    table = table.register(ws, "digits_table", create_new_version=True)
    model = ds.Model.register(ws, train_model(folder), "digits-sklearn",
                              tags={"framework": "scikit-learn"},
                              description="logistic regression on 8x8 digits")
    scores = ds.PipelineData("digit_scores", datastore=ws.get_default_datastore(),
                             output_path_on_compute="digits/scores")
    step = ds.ParallelRunStep(
        name="score-digits",
        parallel_run_config=ds.ParallelRunConfig(
            source_directory=os.path.join(HERE, "tabular_scripts"),
            entry_script="score_digits.py",
            mini_batch_size="24KB",
            error_threshold=0,
            output_action="append_row",
            append_row_file_name="digit_scores.parquet",
            node_count=1,
        ),
        inputs=[table.as_named_input("digits")],
        output=scores,
        models=[model],
    )
    run = ds.Experiment(ws, "digits_tabular").submit(ds.Pipeline(ws, [step]))
    run.wait_for_completion(show_output=True)

    (step_run,) = run.get_steps()
    scored = pd.read_parquet(step_run.output_file)
    joined = scored.merge(pd.read_parquet(label_file), on="id")
    accuracy = float((joined["predicted"] == joined["label"]).mean())
    print()
    print(f"Output:   {step_run.output_file} ({len(scored)} rows: "
          f"{', '.join(scored.columns)})")
    print(f"Accuracy: {accuracy:.3f} on {len(joined)} held-out rows")
    return 0 if accuracy >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main(os.path.abspath(sys.argv[1] if len(sys.argv) > 1
                                  else DEFAULT_FOLDER)))
