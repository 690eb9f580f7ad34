"""Unchanged Azure ML v1 entry scripts, run through the daskscore API.

The scripts are written in the style of the public Azure ML parallel-run samples
(``from azureml.core import Model``, ``from azureml_user.parallel_run import
EntryScript``, ``Run.get_context()``); nothing in them names daskscore. They run
as ``ParallelRunStep``s on the session's multi-process cluster (``shared_client``),
where the runner's import hook resolves their imports to daskscore.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import read_lines, read_tries, write_script

import daskscore as ds
from daskscore.cli import runs as cli_runs

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(300)


def _write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip())
    return path


# -- iris: a pickled scikit-learn model and EntryScript().logger -----------------------
IRIS_SCORE = """
    import os
    import pickle

    from azureml.core.model import Model
    from azureml_user.parallel_run import EntryScript


    def init():
        global iris_model
        logger = EntryScript().logger
        logger.info("iris_score init")
        model_path = Model.get_model_path("iris")
        logger.info("model file: %s", os.path.basename(model_path))
        with open(model_path, "rb") as f:
            iris_model = pickle.load(f)


    def run(input_data):
        logger = EntryScript().logger
        logger.info("%s rows", len(input_data))
        num_rows, num_cols = input_data.shape
        pred = iris_model.predict(input_data[input_data.columns[:4]])
        result = input_data.drop(input_data.columns[4:], axis=1)
        result["variety"] = pred
        return result
"""


def test_iris_pickled_sklearn_model_and_entry_script_logger(tmp_path, shared_client):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris(as_frame=True)
    frame = iris.frame.rename(
        columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["target"] = iris.target_names[iris.target]
    data = tmp_path / "iris"
    data.mkdir()
    frame.iloc[:75].to_csv(data / "iris-a.csv", index=False)
    frame.iloc[75:].to_csv(data / "iris-b.csv", index=False)
    model = LogisticRegression(max_iter=500).fit(frame.iloc[:, :4], frame["target"])
    with open(tmp_path / "iris_model.pkl", "wb") as f:
        pickle.dump(model, f)
    ws = ds.Workspace(tmp_path / "ws")
    registered = ds.Model.register(ws, tmp_path / "iris_model.pkl", "iris")
    script = write_script(tmp_path / "src", IRIS_SCORE, name="iris_score.py")
    cfg = ds.ParallelRunConfig(
        entry_script=script.name, source_directory=str(script.parent),
        mini_batch_size="1KB", error_threshold=0, output_action="append_row",
        append_row_file_name="iris_outputs.csv")
    step = ds.ParallelRunStep(
        name="iris-step", parallel_run_config=cfg,
        inputs=[ds.Dataset.Tabular.from_delimited_files(str(data))],
        output=str(tmp_path / "out"), models=[registered])
    result = step.run(client=shared_client)

    assert result.status == "Completed"
    assert result.mini_batches > 2  # several mini-batches, scored on both workers
    out = pd.read_csv(result.output_file)
    assert len(out) == 150
    assert (out["variety"] == frame["target"]).mean() > 0.9
    logs = [p.read_text() for p in (tmp_path / "out" / "logs" / "user").glob(
        "*/entry_script.log")]
    assert any("iris_score init" in t and "model file: iris_model.pkl" in t
               for t in logs)


# -- a script that parses raw sys.argv and joins predictions on the index -----------
RAW_ARGV = """
    import sys

    import pandas as pd

    THRESHOLD = float(sys.argv[sys.argv.index("--threshold") + 1])
    LABEL = sys.argv[sys.argv.index("--label") + 1]


    def init():
        pass


    def run(mini_batch):
        scores = mini_batch["x"] * 2
        predictions = pd.DataFrame({"score": scores.to_numpy()})  # its own 0..n-1 index
        joined = mini_batch.join(predictions)
        joined["label"] = [LABEL if s > THRESHOLD else "low" for s in joined["score"]]
        return joined
"""


def test_raw_sys_argv_and_a_join_on_the_fresh_index(tmp_path, shared_client):
    data = tmp_path / "table"
    data.mkdir()
    # a Parquet file that stores a pandas index starting at 1000: each mini-batch
    # must still come with a fresh 0..n-1 index, or the join gives NaN
    frame = pd.DataFrame({"x": np.arange(40, dtype=float)},
                         index=pd.RangeIndex(1000, 1040))
    frame.to_parquet(data / "part-0.parquet", row_group_size=10)
    script = write_script(tmp_path / "src", RAW_ARGV)
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="100",
                               error_threshold=0, append_row_file_name="out.parquet")
    step = ds.ParallelRunStep(
        name="argv-step", parallel_run_config=cfg,
        inputs=[ds.Dataset.Tabular.from_parquet_files(str(data))],
        output=str(tmp_path / "out"), arguments=["--threshold", 30, "--label", "high"])
    result = step.run(client=shared_client)

    assert result.status == "Completed"
    assert result.mini_batches >= 2
    out = pd.read_parquet(result.output_file)
    assert out["score"].tolist() == [2.0 * i for i in range(40)]
    assert out["label"].tolist() == ["low"] * 16 + ["high"] * 24


# -- the runtime environment scripts rely on ----------------------------------------
ENV_SCRIPT = """
    import argparse
    import os
    import sys

    from azureml_user.parallel_run import EntryScript

    import common_root          # from the source_directory root
    import sibling_helper       # from the script's own folder

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int)
    parser.add_argument("--raw")
    args, _ = parser.parse_known_args()   # at import time


    def init():
        pass


    def run(mini_batch):
        if any(os.path.basename(p) == "none.txt" for p in mini_batch):
            return None
        out = []
        os.makedirs("outputs", exist_ok=True)
        for path in mini_batch:
            name = os.path.basename(path)
            with open(os.path.join("outputs", "same-name.txt"), "a") as f:
                f.write(name + "\\n")
            out.append(" ".join([
                name, str(args.batch * 2), repr(sys.argv[1:]),
                common_root.WHERE, sibling_helper.WHERE,
                str(os.environ["AZUREML_BI_OUTPUT_PATH"] == EntryScript().output_dir),
            ]))
        return out
"""


def test_runtime_environment_of_an_unchanged_script(tmp_path, shared_client):
    src = tmp_path / "src"
    _write(src, "aml_prs/model_train.py", ENV_SCRIPT)
    _write(src, "aml_prs/sibling_helper.py", "WHERE = 'sibling'\n")
    _write(src, "common_root.py", "WHERE = 'root'\n")
    data = tmp_path / "files"
    data.mkdir()
    names = [f"f{i}.txt" for i in range(6)] + ["none.txt"]
    for name in names:
        (data / name).write_text(name)

    class Param:  # what a PipelineParameter is to a step: its default_value
        default_value = 7

    cfg = ds.ParallelRunConfig(entry_script="aml_prs\\model_train.py",
                               source_directory=str(src), mini_batch_size="1",
                               error_threshold=-1, run_max_try=1)
    step = ds.ParallelRunStep(
        name="env-step", parallel_run_config=cfg,
        inputs=[ds.Dataset.File.from_files(str(data))], output=str(tmp_path / "out"),
        arguments=["--batch", 20, "--raw", Param()])
    result = step.run(client=shared_client)

    assert result.status == "Completed"
    lines = read_lines(result.output_file)
    scored = sorted(n for n in names if n != "none.txt")
    assert [line.split()[0] for line in lines] == scored  # none.txt failed
    for line in lines:
        _, doubled, *rest = line.split(" ", 2)
        assert doubled == "40"
        assert line.endswith("['--batch', '20', '--raw', '7'] root sibling True")
    # run() returning None failed that mini-batch, not the job
    failed = [t for t in read_tries(tmp_path / "out") if t["status"] != "RUN_DONE"]
    assert [t["input"].rsplit("/", 1)[-1] for t in failed] == ["none.txt"]
    assert "run() returned None" in failed[0]["error"]
    # ./outputs is each process's own: every file written once, none lost
    kept = list((tmp_path / "out" / "logs" / "user").glob("*/outputs/same-name.txt"))
    assert kept
    written = sorted(n for p in kept for n in p.read_text().split())
    assert written == scored


# -- many models: train with Run.get_context(), then forecast with Model.list ---------
MM_TRAIN = """
    import argparse
    import os
    import pickle

    import pandas as pd
    from azureml.core import Run
    from sklearn.linear_model import LinearRegression

    parser = argparse.ArgumentParser("split")
    parser.add_argument("--timestamp_column", type=str)
    parser.add_argument("--target_column", type=str)
    args, _ = parser.parse_known_args()

    current_step_run = Run.get_context()


    def init():
        os.makedirs("./outputs", exist_ok=True)
        current_step_run.tag("stage", "train")
        current_step_run.set_tags({"team": "forecasting"})
        current_step_run.log("context", " ".join([
            current_step_run.id, current_step_run.parent.id,
            current_step_run.experiment.name, current_step_run.get_status()]))


    def run(input_data, mini_batch_context):
        key = mini_batch_context.partition_key_value
        assert list(key) == ["Store", "Brand"], key
        assert len(mini_batch_context.dataset.to_pandas_dataframe()) == len(input_data)
        data = input_data.set_index(args.timestamp_column).sort_index()
        week = data.index.isocalendar().week.astype(int).to_frame("week")
        model = LinearRegression().fit(week, data[args.target_column])
        model_name = "model_{}_{}".format(key["Store"], key["Brand"])
        with open(os.path.join("./outputs", model_name), "wb") as f:
            pickle.dump(model, f)
        child = current_step_run.child_run(name=model_name)
        child.log("rows", len(data))
        child.complete()
        error = model.predict(week) - data[args.target_column]
        current_step_run.log("mse", float((error ** 2).mean()))
        current_step_run.log_row("fitted", store=str(key["Store"]), rows=len(data))
        current_step_run.upload_file(model_name, os.path.join("./outputs", model_name))
        current_step_run.register_model(
            model_path=model_name, model_name=model_name, model_framework="sklearn",
            tags={"Store": str(key["Store"]), "Brand": key["Brand"], "ModelType": "lr"})
        return []
"""

MM_FORECAST = """
    import os
    import pickle

    import pandas as pd
    from azureml.core import Model, Run
    from azureml_user.parallel_run import EntryScript


    def init():
        global ws
        ws = Run.get_context().experiment.workspace


    def run(input_data):
        store = str(input_data["Store"].iloc[0])
        brand = input_data["Brand"].iloc[0]
        models = Model.list(ws, tags=[["Store", store], ["Brand", brand], "ModelType"],
                            latest=True)
        target = os.path.join(EntryScript().working_dir, "models", store)
        path = models[0].download(target_dir=target, exist_ok=True)
        with open(path, "rb") as f:
            model = pickle.load(f)
        week = input_data.set_index("WeekStarting").index.isocalendar().week
        input_data["Prediction"] = model.predict(week.astype(int).to_frame("week"))
        input_data["ModelVersion"] = models[0].version
        return input_data
"""


def _oj_sales(folder: Path) -> pd.DataFrame:
    weeks = pd.date_range("2021-01-04", periods=12, freq="7D")
    rows = []
    for store, slope in ((1001, 2.0), (1002, 5.0)):
        for brand in ("dominicks",):
            for i, week in enumerate(weeks):
                rows.append({"WeekStarting": week.strftime("%Y-%m-%d"), "Store": store,
                             "Brand": brand, "Quantity": 100 + slope * (i + 1)})
    frame = pd.DataFrame(rows)
    folder.mkdir(parents=True)
    frame.to_csv(folder / "oj.csv", index=False)
    return frame


def _fetched_folders() -> set[str]:
    """The folders run.register_model() and download_file() fetch into."""
    temp = tempfile.gettempdir()
    return {*glob.glob(os.path.join(temp, "daskscore-model-*")),
            *glob.glob(os.path.join(temp, "daskscore-run-*"))}


def test_many_models_train_then_forecast(tmp_path, shared_client, capsys):
    fetched_before = _fetched_folders()
    frame = _oj_sales(tmp_path / "oj")
    src = tmp_path / "src"
    _write(src, "train.py", MM_TRAIN)
    _write(src, "forecast.py", MM_FORECAST)
    ws = ds.Workspace(tmp_path / "ws")
    sales = ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "oj" / "oj.csv"))
    train = ds.ParallelRunStep(
        name="many-models-train", inputs=[sales], output=str(tmp_path / "train-out"),
        parallel_run_config=ds.ParallelRunConfig(
            entry_script="train.py", source_directory=str(src), error_threshold=-1,
            partition_keys=["Store", "Brand"], process_count_per_node=2),
        arguments=["--timestamp_column", "WeekStarting", "--target_column",
                   "Quantity"])
    forecast = ds.ParallelRunStep(
        name="many-models-forecast", inputs=[sales],
        output=str(tmp_path / "forecast-out"),
        parallel_run_config=ds.ParallelRunConfig(
            entry_script="forecast.py", source_directory=str(src), error_threshold=0,
            partition_keys=["Store", "Brand"], append_row_file_name="forecast.csv"))
    run = ds.Experiment(ws, "many-models").submit(
        ds.Pipeline(workspace=ws, steps=[train, forecast]), client=shared_client)
    run.wait_for_completion()

    assert run.get_status() == "Completed", run.get_output()
    train_run = run.find_step_run("many-models-train")[0]
    # run() returned [] for every partition: with error_threshold=-1 it completes
    assert train_run.status == "Completed"
    assert train_run.details["succeeded_items"] == 0
    metrics = train_run.get_metrics()
    assert len(metrics["mse"]) == 2 and max(metrics["mse"]) < 1e-6
    assert sorted(metrics["fitted"]["store"]) == ["1001", "1002"]
    contexts = metrics["context"] if isinstance(metrics["context"], list) else [
        metrics["context"]]
    assert set(contexts) == {f"{train_run.run_id} {run.id} many-models Running"}
    assert train_run.history()[train_run.run_id]["tags"] == {
        "stage": "train", "team": "forecasting"}
    models = {m.name: m for m in ds.Model.list(ws, latest=True)}
    assert set(models) == {"model_1001_dominicks", "model_1002_dominicks"}
    assert models["model_1001_dominicks"].tags == {
        "Store": "1001", "Brand": "dominicks", "ModelType": "lr"}
    assert models["model_1001_dominicks"].properties["model_framework"] == "sklearn"
    # what register_model() fetched is gone once the registry holds its copy
    assert _fetched_folders() <= fetched_before
    out = pd.read_csv(run.find_step_run("many-models-forecast")[0].output_file)
    merged = out.merge(frame, on=["WeekStarting", "Store", "Brand"])
    assert len(merged) == len(frame)
    assert np.allclose(merged["Prediction"], merged["Quantity_y"], atol=1e-6)
    # the run history lists what the script logged, per step and child run
    parser = argparse.ArgumentParser(prog="daskscore")
    cli_runs.add_runs_commands(parser.add_subparsers(dest="command"))
    capsys.readouterr()
    cli_runs.run_runs_command(parser.parse_args(
        ["runs", "show", run.id, "--workspace", str(tmp_path / "ws")]))
    shown = capsys.readouterr().out
    train_part = shown.split("Step many-models-forecast")[0]
    assert "metric mse: [" in train_part
    assert "(model_1001_dominicks): Completed" in train_part
    assert "metric rows: 12" in train_part
    assert "file model_1002_dominicks" in train_part
    cli_runs.run_runs_command(parser.parse_args(
        ["runs", "show", run.id, "--workspace", str(tmp_path / "ws"), "--json"]))
    steps = json.loads(capsys.readouterr().out)["steps"]
    step_runs = steps[0]["runs"]
    assert len(step_runs) == 3  # the step's run and one child per partition
    assert step_runs[train_run.run_id]["metrics"]["mse"] == metrics["mse"]
    assert steps[1]["runs"] == {}  # the forecast logged nothing


# -- MNIST-style PNGs scored by a TF1-style graph (tf.compat.v1) ----------------------
MNIST_SCORE = """
    import os

    import numpy as np
    import tensorflow as tf
    from PIL import Image
    from azureml.core import Model


    def init():
        global g_tf_sess, X, output
        tf.compat.v1.disable_eager_execution()
        model_root = Model.get_model_path("mnist")
        params = np.load(os.path.join(model_root, "weights.npz"))
        X = tf.compat.v1.placeholder(tf.float32, [None, 64], name="X")
        W = tf.compat.v1.constant(params["W"], dtype=tf.float32)
        b = tf.compat.v1.constant(params["b"], dtype=tf.float32)
        output = tf.compat.v1.argmax(tf.compat.v1.matmul(X, W) + b, 1)
        g_tf_sess = tf.compat.v1.Session(
            config=tf.compat.v1.ConfigProto(device_count={"GPU": 0}))


    def run(mini_batch):
        print(f"run method start: {__file__}, run({mini_batch})")
        resultList = []
        for image in mini_batch:
            data = Image.open(image)
            np_im = np.array(data).reshape((1, 64)) / 255.0
            pred = g_tf_sess.run(output, feed_dict={X: np_im})
            resultList.append("{}: {}".format(os.path.basename(image), pred[0]))
        return resultList
"""


@pytest.mark.slow
def test_mnist_pngs_with_a_tf1_graph(tmp_path, shared_client):
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    pixels = np.round(digits.data * 255 / 16).astype(np.uint8)
    clf = LogisticRegression(max_iter=2000).fit(pixels / 255.0, digits.target)
    model_dir = tmp_path / "mnist-model"
    model_dir.mkdir()
    W, b = clf.coef_.T.astype(np.float32), clf.intercept_.astype(np.float32)
    np.savez(model_dir / "weights.npz", W=W, b=b)
    images = tmp_path / "mnist"
    images.mkdir()
    chosen = list(range(0, 120, 10))
    for i in chosen:
        Image.fromarray(pixels[i].reshape(8, 8)).save(images / f"digit-{i:04d}.png")
    ws = ds.Workspace(tmp_path / "ws")
    model = ds.Model.register(ws, model_dir, "mnist")
    script = write_script(tmp_path / "src", MNIST_SCORE, name="digit_identification.py")
    cfg = ds.ParallelRunConfig(entry_script=script.name,
                               source_directory=str(script.parent),
                               mini_batch_size="5", error_threshold=0,
                               run_invocation_timeout=120)
    step = ds.ParallelRunStep(name="batch-mnist", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(images))],
                              output=str(tmp_path / "out"), models=[model])
    result = step.run(client=shared_client)

    assert result.status == "Completed", result.reason
    expected = [f"digit-{i:04d}.png: {int(np.argmax(pixels[i] / 255.0 @ W + b))}"
                for i in chosen]
    assert read_lines(result.output_file) == expected
