"""Pipelines, experiments, run history, reuse (daskscore/pipeline/, cli/runs.py).

Real worker processes (the session's ``shared_client``), real files in
``tmp_path``. Scripts leave a marker file per ``run()`` call, so "recomputed" and
"reused" are told apart by what ran, never by time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers import markers, read_lines, write_script

import daskscore as ds
from daskscore.cli import runs as cli_runs

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(240)

MARKING_SCRIPT = """
    import os
    import sys
    import uuid

    MARKS = sys.argv[1]

    def init():
        pass

    def run(mini_batch):
        os.makedirs(MARKS, exist_ok=True)
        open(os.path.join(MARKS, "run-" + uuid.uuid4().hex), "w").close()
        return [os.path.basename(p) for p in mini_batch]
"""


@pytest.fixture
def ws(tmp_path):
    return ds.Workspace(tmp_path / "ws")


@pytest.fixture
def images(ws, tmp_path):
    folder = tmp_path / "store" / "images"
    folder.mkdir(parents=True)
    for i in range(6):
        (folder / f"img{i}.png").write_text(str(i))
    return ds.Datastore.register_local(ws, "images", tmp_path / "store")


def file_step(ws, tmp_path, script, images, name="mark-step", allow_reuse=True,
              output=None, **config):
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="2",
                               **config)
    dataset = ds.Dataset.File.from_files(images.path("images/")).register(
        ws, "images", create_new_version=True)
    output = output or ds.PipelineData("marked", datastore=ws.get_default_datastore(),
                                       output_path_on_compute="marked")
    return ds.ParallelRunStep(
        name=name, parallel_run_config=cfg, inputs=[dataset.as_named_input("images")],
        output=output, arguments=[str(tmp_path / "marks")], allow_reuse=allow_reuse)


def submit(ws, steps, client, **kwargs) -> ds.PipelineRun:
    run = ds.Experiment(ws, "exp").submit(ds.Pipeline(workspace=ws, steps=steps),
                                          client=client, **kwargs)
    run.wait_for_completion(raise_on_error=False, stream=io.StringIO())
    return run


# -- PipelineData ----------------------------------------------------------------------
def test_pipeline_data_is_a_folder_on_its_datastore(ws, tmp_path):
    data = ds.PipelineData("inferences", datastore=ws.get_default_datastore(),
                           output_path_on_compute="mnist/results")
    assert data.path == str(tmp_path / "ws" / "data" / "mnist" / "results")
    assert os.fspath(data) == data.path
    assert ds.PipelineData("x", datastore=ws.get_default_datastore()).path.endswith(
        os.path.join("pipelinedata", "x"))
    assert data.as_dataset().path == os.path.join(data.path, "*")
    assert data.as_input().input_name == "inferences"
    assert data.as_tabular_dataset("*.csv").format == "csv"
    with pytest.raises(ds.ConfigError):
        data.as_tabular_dataset("*.txt")
    with pytest.raises(ds.ConfigError):
        ds.PipelineData("x", datastore="not a datastore")


def test_pipeline_data_default_datastore_comes_from_the_config(ws, tmp_path,
                                                               monkeypatch):
    ws.write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert ds.PipelineData("out").path.startswith(str(tmp_path / "ws" / "data"))


# -- pipeline validation ---------------------------------------------------------------
def test_pipeline_checks_its_steps(ws, tmp_path, images):
    script = write_script(tmp_path / "src", MARKING_SCRIPT)
    step = file_step(ws, tmp_path, script, images)
    with pytest.raises(ds.ConfigError, match="non-empty"):
        ds.Pipeline(ws, [])
    with pytest.raises(ds.ConfigError, match="distinct names"):
        ds.Pipeline(ws, [step, step])
    with pytest.raises(ds.ConfigError, match="ds.Workspace"):
        ds.Pipeline("ws", [step])


def test_a_step_cannot_read_a_later_steps_output(ws, tmp_path, images):
    script = write_script(tmp_path / "src", MARKING_SCRIPT)
    first = file_step(ws, tmp_path, script, images, name="first")
    data = ds.PipelineData("marked", datastore=ws.get_default_datastore(),
                           output_path_on_compute="marked")
    cfg = ds.ParallelRunConfig(entry_script=str(script))
    second = ds.ParallelRunStep(name="second", parallel_run_config=cfg,
                                inputs=[data.as_dataset()], output=tmp_path / "o2")
    with pytest.raises(ds.ConfigError, match="list 'first' first"):
        ds.Pipeline(ws, [second, first])
    orphan = ds.ParallelRunStep(
        name="orphan", parallel_run_config=cfg, output=tmp_path / "o3",
        inputs=[ds.PipelineData("nobody", datastore=ws.get_default_datastore())
                .as_dataset()])
    with pytest.raises(ds.ConfigError, match="no step of this pipeline writes"):
        ds.Pipeline(ws, [first, orphan])


# -- two steps -------------------------------------------------------------------------
DOUBLE = """
    import pandas as pd

    def init():
        pass

    def run(mini_batch):
        return pd.DataFrame({"id": mini_batch["id"], "y": mini_batch["x"] * 2})
"""
PLUS_ONE = """
    import pandas as pd

    def init():
        pass

    def run(mini_batch):
        return pd.DataFrame({"id": mini_batch["id"], "z": mini_batch["y"] + 1})
"""


def test_two_step_pipeline_passes_data_between_steps(ws, tmp_path, shared_client):
    table = tmp_path / "table.csv"
    pd.DataFrame({"id": range(200), "x": range(200)}).to_csv(table, index=False)
    doubled = ds.PipelineData("doubled", datastore=ws.get_default_datastore())
    first = ds.ParallelRunStep(
        name="double", inputs=[ds.Dataset.Tabular.from_delimited_files(str(table))],
        parallel_run_config=ds.ParallelRunConfig(
            entry_script=str(write_script(tmp_path / "s1", DOUBLE)),
            mini_batch_size="1KB", append_row_file_name="doubled.parquet"),
        output=doubled)
    second = ds.ParallelRunStep(
        name="plus-one", inputs=[doubled.as_tabular_dataset()],
        parallel_run_config=ds.ParallelRunConfig(
            entry_script=str(write_script(tmp_path / "s2", PLUS_ONE)),
            append_row_file_name="final.parquet"),
        output=tmp_path / "final")
    run = submit(ws, [first, second], shared_client)

    assert run.status == "Completed", run.get_details()
    steps = run.get_steps()
    assert [(s.name, s.status) for s in steps] == [("double", "Completed"),
                                                   ("plus-one", "Completed")]
    assert steps[0].output_file == os.path.join(doubled.path, "doubled.parquet")
    final = pd.read_parquet(steps[1].output_file)
    assert final["id"].tolist() == list(range(200))
    assert (final["z"] == final["id"] * 2 + 1).all()
    assert steps[1].result.succeeded_items == 200


# -- submit, wait, status, history -----------------------------------------------------
GATED = """
    import os
    import sys
    import time

    def init():
        pass

    def run(mini_batch):
        deadline = time.monotonic() + 120
        while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [os.path.basename(p) for p in mini_batch]
"""


def test_submit_returns_at_once_and_wait_sees_completion(ws, tmp_path, images,
                                                         shared_client):
    gate = tmp_path / "gate"
    script = write_script(tmp_path / "src", GATED)
    step = file_step(ws, tmp_path, script, images, name="gated")
    step.arguments = [str(gate)]
    run = ds.Experiment(ws, "exp").submit(ds.Pipeline(ws, [step]), client=shared_client,
                                          tags={"purpose": "test"})
    try:
        assert run.status == "Running"
        history = ds.PipelineRun.get(ws, run.id)
        assert history.status == "Running"
        assert history.get_details()["tags"] == {"purpose": "test"}
        assert run.wait_for_completion(timeout_seconds=0.2) == "Running"
    finally:
        gate.touch()
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, stream=out) == "Completed"
    text = out.getvalue()
    assert f"RunId: {run.id}" in text
    assert "Step gated: started" in text
    assert "Processed" in text  # the live progress lines
    assert "Step gated: Completed (6 items succeeded" in text
    details = ds.PipelineRun.get(ws, run.id).get_details()
    assert details["status"] == "Completed"
    assert details["started"] and details["ended"] and details["duration_seconds"] > 0
    assert details["steps"][0]["succeeded_items"] == 6
    assert run.get_output() == text
    log = tmp_path / "ws" / "experiments" / "exp" / "runs" / f"{run.id}.log"
    assert log.read_text() == text
    assert [r.id for r in ds.Experiment(ws, "exp").get_runs()] == [run.id]
    assert set(ws.experiments) == {"exp"}


FAILING = """
    def init():
        pass

    def run(mini_batch):
        raise ValueError("bad input")
"""


def test_a_failed_step_fails_the_run_and_stops_it(ws, tmp_path, images, shared_client):
    bad = file_step(ws, tmp_path, write_script(tmp_path / "bad", FAILING), images,
                    name="bad-step", error_threshold=0, run_max_try=1)
    after = file_step(ws, tmp_path, write_script(tmp_path / "ok", MARKING_SCRIPT),
                      images, name="after", output=tmp_path / "after")
    run = ds.Experiment(ws, "exp").submit(ds.Pipeline(ws, [bad, after]),
                                          client=shared_client)
    with pytest.raises(ds.JobError, match="bad-step"):
        run.wait_for_completion(stream=io.StringIO())
    assert run.wait_for_completion(raise_on_error=False) == "Failed"
    steps = {s.name: s for s in run.get_steps()}
    assert steps["bad-step"].status == "Failed"
    assert "error_threshold=0" in steps["bad-step"].details["reason"]
    assert steps["after"].status == "NotStarted"
    assert markers(tmp_path / "marks", "run") == []
    assert "bad-step" in ds.PipelineRun.get(ws, run.id).get_details()["error"]


def test_an_entry_script_error_fails_the_run_with_the_reason(ws, tmp_path, images,
                                                             shared_client):
    script = tmp_path / "src" / "broken.py"
    script.parent.mkdir()
    script.write_text("def init(:\n    pass\n")
    run = submit(ws, [file_step(ws, tmp_path, script, images, name="broken")],
                 shared_client)
    assert run.status == "Failed"
    assert "syntax error" in run.get_details()["error"]


def test_a_run_whose_process_died_shows_failed(ws, tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    runs = tmp_path / "ws" / "experiments" / "exp" / "runs"
    runs.mkdir(parents=True)
    record = {"run_id": "exp_1_dead", "experiment": "exp", "status": "Running",
              "host": __import__("socket").gethostname(),
              "pid": int(gone.stdout), "submitted": "2026-01-01T00:00:00+00:00",
              "steps": []}
    (runs / "exp_1_dead.json").write_text(json.dumps(record))
    assert ds.PipelineRun.get(ws, "exp_1_dead").status == "Failed"


def test_unknown_run_id(ws):
    with pytest.raises(ds.NotRegisteredError, match="daskscore runs list"):
        ds.PipelineRun.get(ws, "nope")


# -- reuse -----------------------------------------------------------------------------
@pytest.mark.slow
def test_reuse_hit_and_misses(ws, tmp_path, images, shared_client):
    script = write_script(tmp_path / "src", MARKING_SCRIPT)
    marks = tmp_path / "marks"

    def ran() -> int:
        return len(markers(marks, "run"))

    first = submit(ws, [file_step(ws, tmp_path, script, images)], shared_client)
    assert first.status == "Completed"
    assert ran() == 3  # 6 files, 2 per mini-batch

    # identical step: reused, nothing runs
    hit = submit(ws, [file_step(ws, tmp_path, script, images)], shared_client)
    (step,) = hit.get_steps()
    assert step.status == "Completed" and step.reused
    assert step.details["reused_from"] == first.id
    assert step.output_file == first.get_steps()[0].output_file
    assert ran() == 3

    # allow_reuse=False always recomputes
    submit(ws, [file_step(ws, tmp_path, script, images, allow_reuse=False)],
           shared_client)
    assert ran() == 6
    # ... and so does regenerate_outputs=True
    submit(ws, [file_step(ws, tmp_path, script, images)], shared_client,
           regenerate_outputs=True)
    assert ran() == 9
    # the latest successful run is reusable again
    assert submit(ws, [file_step(ws, tmp_path, script, images)],
                  shared_client).get_steps()[0].reused
    assert ran() == 9

    # one byte of the script changed: recomputed
    script.write_text(script.read_text() + "#")
    miss = submit(ws, [file_step(ws, tmp_path, script, images)], shared_client)
    assert not miss.get_steps()[0].reused
    assert ran() == 12

    # an input file changed: recomputed
    (tmp_path / "store" / "images" / "img0.png").write_text("changed")
    assert not submit(ws, [file_step(ws, tmp_path, script, images)],
                      shared_client).get_steps()[0].reused
    assert ran() == 15

    # different arguments or settings: recomputed
    step = file_step(ws, tmp_path, script, images)
    step.arguments = [str(marks), "--extra"]
    assert not submit(ws, [step], shared_client).get_steps()[0].reused
    assert ran() == 18
    assert not submit(ws, [file_step(ws, tmp_path, script, images,
                                     run_max_try=2)],
                      shared_client).get_steps()[0].reused
    assert ran() == 21


@pytest.mark.slow
def test_a_reused_step_keeps_a_later_step_reusable(ws, tmp_path, images,
                                                   shared_client):
    script = write_script(tmp_path / "src", MARKING_SCRIPT)
    marks = tmp_path / "marks"

    def pipeline():
        first = file_step(ws, tmp_path, script, images, name="first")
        data = ds.PipelineData("marked", datastore=ws.get_default_datastore(),
                               output_path_on_compute="marked")
        second = ds.ParallelRunStep(
            name="second", parallel_run_config=ds.ParallelRunConfig(
                entry_script=str(script)),
            inputs=[data.as_dataset()], output=tmp_path / "second",
            arguments=[str(marks)])
        return [first, second]

    submit(ws, pipeline(), shared_client)
    assert len(markers(marks, "run")) == 4  # 3 + the one collected file
    again = submit(ws, pipeline(), shared_client)
    assert [s.reused for s in again.get_steps()] == [True, True]
    assert len(markers(marks, "run")) == 4


def test_an_output_written_since_is_not_reused(ws, tmp_path, images, shared_client):
    script = write_script(tmp_path / "src", MARKING_SCRIPT)
    first = submit(ws, [file_step(ws, tmp_path, script, images)], shared_client)
    # somebody ran another job into the same folder since
    report = os.path.join(first.get_steps()[0].output_dir, "logs", "job_report.json")
    with open(report, "a") as f:
        f.write(" ")
    assert not submit(ws, [file_step(ws, tmp_path, script, images)],
                      shared_client).get_steps()[0].reused


# -- named inputs, side inputs, partition keys -----------------------------------------
SIDE = """
    import os
    import daskscore as ds

    def init():
        global labels, main
        inputs = ds.EntryScript().inputs
        labels = {}
        for path in inputs["labels"]:
            with open(path) as f:
                labels[os.path.basename(path)] = f.read().strip()
        main = inputs["images"]

    def run(mini_batch):
        return [f"{os.path.basename(p)} {sorted(labels)} {main}" for p in mini_batch]
"""


def test_named_and_side_inputs_reach_the_script(ws, tmp_path, images, shared_client):
    label_dir = tmp_path / "labels"
    label_dir.mkdir()
    (label_dir / "a.txt").write_text("A")
    (label_dir / "b.txt").write_text("B")
    labels = ds.Dataset.File.from_files(str(label_dir)).register(ws, "labels")
    step = file_step(ws, tmp_path, write_script(tmp_path / "src", SIDE), images,
                     name="side")
    step.side_inputs = [labels.as_named_input("labels")]
    run = submit(ws, [step], shared_client)
    assert run.status == "Completed", run.get_details()
    lines = read_lines(run.get_steps()[0].output_file)
    assert len(lines) == 6
    for line in lines:
        name, rest = line.split(" ", 1)
        assert rest == f"['a.txt', 'b.txt'] {images.path('images/')}"


PARTITIONS = """
    import pandas as pd

    def init():
        pass

    def run(mini_batch, mini_batch_context):
        key = mini_batch_context.partition_key_value
        return pd.DataFrame([{**key, "rows": len(mini_batch),
                              "sales": int(mini_batch["sales"].sum()),
                              "stores": mini_batch["store"].nunique(),
                              "brands": mini_batch["brand"].nunique()}])
"""


def test_partition_keys_make_one_mini_batch_per_key_combination(ws, tmp_path,
                                                                  shared_client):
    rows = [{"store": s, "brand": b, "sales": i}
            for i, (s, b) in enumerate([("s1", "x"), ("s2", "x"), ("s1", "y"),
                                        ("s1", "x"), ("s2", "y"), ("s2", "x")] * 5)]
    pd.DataFrame(rows[:15]).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(rows[15:]).to_csv(tmp_path / "b.csv", index=False)
    sales = ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "*.csv"))
    step = ds.ParallelRunStep(
        name="by-store-brand", inputs=[sales], output=tmp_path / "out",
        parallel_run_config=ds.ParallelRunConfig(
            entry_script=str(write_script(tmp_path / "src", PARTITIONS)),
            partition_keys=["store", "brand"], append_row_file_name="agg.parquet"))
    run = submit(ws, [step], shared_client)
    assert run.status == "Completed", run.get_details()
    got = pd.read_parquet(run.get_steps()[0].output_file)
    expected = pd.DataFrame(rows).groupby(["store", "brand"])["sales"].agg(
        ["size", "sum"]).reset_index()
    assert run.get_steps()[0].details["mini_batches"] == 4
    assert sorted(zip(got["store"], got["brand"], got["rows"], got["sales"])) == sorted(
        zip(expected["store"], expected["brand"], expected["size"], expected["sum"]))
    assert set(got["stores"]) == {1} and set(got["brands"]) == {1}


# -- the runs command ------------------------------------------------------------------
def runs_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="daskscore")
    cli_runs.add_runs_commands(parser.add_subparsers(dest="command"))
    return cli_runs.run_runs_command(parser.parse_args(argv))


def test_runs_list_and_show(ws, tmp_path, images, shared_client, capsys, monkeypatch):
    script = write_script(tmp_path / "src", MARKING_SCRIPT)
    first = submit(ws, [file_step(ws, tmp_path, script, images)], shared_client)
    second = submit(ws, [file_step(ws, tmp_path, script, images)], shared_client)
    capsys.readouterr()

    assert runs_cli(["runs", "list", "--workspace", ws.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["RUN", "ID", "STATUS"]
    assert [line.split()[0] for line in lines[1:]] == [second.id, first.id]
    assert "mark-step:Completed(reused)" in lines[1]

    ws.write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert runs_cli(["runs", "show", first.id]) == 0
    text = capsys.readouterr().out
    assert f"Run:         {first.id}" in text
    assert "Status:      Completed" in text
    assert "Step mark-step: Completed" in text
    assert "items: 6 succeeded, 0 failed" in text

    assert runs_cli(["runs", "show", second.id, "--json"]) == 0
    details = json.loads(capsys.readouterr().out)
    assert details["steps"][0]["reused_from"] == first.id
    assert runs_cli(["runs", "list", "--json", "--experiment", "exp"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2

    with pytest.raises(ds.NotRegisteredError) as excinfo:
        runs_cli(["runs", "show", "no-such-run"])
    assert excinfo.value.exit_code == 2
