"""``daskscore run pipeline.yml`` / ``job.yml`` end to end, on the embedded cluster.

The same examples run on a ``dask scheduler``/``dask worker`` cluster in
``test_v2_cluster.py``; the checks of what they produced are shared from here.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from examples_data import iris, many_models, mnist

from daskscore.output.store import StateStore

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "daskscore.cli"]


def cli_env() -> dict[str, str]:
    """This environment, with PYTHONPATH made absolute (the commands run elsewhere)."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    return env


def daskscore(cwd: Path, *args: str,
              timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), check=False)


def check_iris(folder: Path, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("Job iris-batch-scoring: Completed (1500 of 1500 items succeeded"
            in proc.stdout)
    table = pd.read_csv(folder / "data" / "iris.csv")
    with open(folder / "model" / "iris.pkl", "rb") as f:
        model = pickle.load(f)
    expected = model.predict(table[["sepal_length", "sepal_width", "petal_length",
                                    "petal_width"]])
    # the reference format whatever the extension: rows space-separated, no header,
    # in input order, exactly once
    lines = (folder / "out" / "iris_scores.csv").read_text().splitlines()
    assert lines == [f"{i} {p}" for i, p in zip(table["id"], expected)]
    assert "compute: accepted and ignored" in proc.stderr


def check_many_models(folder: Path, root: Path,
                      proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Job partition: Completed (exit code 0" in proc.stdout
    assert "Job train: Completed (3 of 60 items succeeded" in proc.stdout
    assert "Pipeline many-models-training: Completed" in proc.stdout
    # the command job wrote the MLTable (and read it back with `import mltable`)
    log = (root / "partition" / "user_logs" / "std_log.txt").read_text()
    assert "partitioned 60 rows into 3 folders" in log
    assert (root / "partition" / "partitioned" / "MLTable").is_file()
    models = sorted(p.name for p in (root / "train" / "models").iterdir())
    assert models == ["model_1.pkl", "model_2.pkl", "model_3.pkl"]
    with open(root / "train" / "models" / "model_2.pkl", "rb") as f:
        assert f"{pickle.load(f).coef_[0]:.1f}" == "3.0"  # Sales = 200 + 3 * Week
    lines = (folder / "out" / "train" / "aggregated_returns.csv").read_text()
    assert lines.splitlines() == ["1 20 2.0", "2 20 3.0", "3 20 4.0"]
    assert (root / "train" / "logs" / "job_result.txt").is_file()


def check_mnist(folder: Path, root: Path, proc: subprocess.CompletedProcess) -> None:
    # error_threshold: 0 in the YAML, --error_threshold 1 among program_arguments:
    # the runner flag wins, so the one broken PNG does not fail the job
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Job score: Completed (22 of 23 items succeeded, 1 failed" in proc.stdout
    assert ("runner flag(s) --task_overhead_timeout, --progress_update_timeout, "
            "--first_task_creation_timeout, --resource_monitor_interval, "
            "--copy_logs_to_parent accepted and ignored") in proc.stderr
    lines = (root / "score" / "predictions" / "parallel_run_step.txt").read_text()
    lines = lines.splitlines()
    assert [line.split()[0] for line in lines] == [f"digit_{i:03d}.png"
                                                     for i in range(22)]
    from sklearn.datasets import load_digits
    truth = load_digits().target[:22]
    right = sum(int(line.split()[1]) == t for line, t in zip(lines, truth))
    assert right >= 18


def runs(cwd: Path) -> list[dict]:
    proc = daskscore(cwd, "runs", "list", "--workspace", ".daskscore", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_standalone_parallel_job_with_an_mltable(tmp_path):
    folder = iris(tmp_path)
    proc = daskscore(tmp_path, "run", "iris/job.yml", "--no-progress")
    check_iris(folder, proc)
    (record,) = runs(tmp_path)
    assert record["experiment"] == "iris-scoring"
    assert record["status"] == "Completed"
    assert record["steps"][0]["name"] == "iris-batch-scoring"
    assert record["steps"][0]["succeeded_items"] == 1500


def test_pipeline_command_then_parallel_with_partition_keys(tmp_path):
    folder = many_models(tmp_path)
    proc = daskscore(tmp_path, "run", "many_models/pipeline.yml", "--no-progress",
                     "--output-root", "outs")
    check_many_models(folder, tmp_path / "outs", proc)
    (record,) = runs(tmp_path)
    assert [(s["name"], s["status"]) for s in record["steps"]] == [
        ("partition", "Completed"), ("train", "Completed")]
    shown = daskscore(tmp_path, "runs", "show", record["run_id"], "--workspace",
                      ".daskscore")
    assert "Step partition: Completed" in shown.stdout
    assert "Step train: Completed" in shown.stdout


def test_uri_folder_of_pngs_with_runner_flags(tmp_path):
    folder = mnist(tmp_path)
    proc = daskscore(tmp_path, "run", "mnist/pipeline.yml", "--no-progress")
    check_mnist(folder, tmp_path / "azureml-outputs" / "mnist-batch-inference", proc)


def test_failed_job_stops_its_dependants(tmp_path):
    many_models(tmp_path)
    proc = daskscore(tmp_path, "run", "many_models/pipeline.yml", "--no-progress",
                     "--set", "jobs.partition.inputs.partition_columns=NoSuchColumn")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Job partition: Failed: the command exited with 1: KeyError: " \
           "'NoSuchColumn'" in proc.stdout
    assert "Job train: not started: job 'partition' it depends on failed" in proc.stdout
    assert "Pipeline many-models-training: Failed" in proc.stdout
    (record,) = runs(tmp_path)
    assert record["status"] == "Failed"
    assert [s["status"] for s in record["steps"]] == ["Failed", "NotStarted"]


BAD = {
    "binding": ("""\
        type: command
        command: echo ${{inputs.nope}}
        inputs:
          x: 1
        """, "job.yml: command: ${{inputs.nope}}: the job has no input 'nope'"),
    "missing": ("""\
        type: parallel
        inputs:
          data: {type: uri_folder, path: ./no/such/folder}
        input_data: ${{inputs.data}}
        task: {entry_script: score.py}
        """, "job.yml: inputs.data.path: ./no/such/folder: no such file or folder"),
    "mltable": ("""\
        type: parallel
        inputs:
          data: {type: mltable, path: ./table}
        input_data: ${{inputs.data}}
        task: {entry_script: score.py}
        """, "transformation 'filter' is not supported by daskscore's MLTable reader"),
    "size": ("""\
        type: parallel
        inputs:
          data: {type: uri_folder, path: ./table}
        input_data: ${{inputs.data}}
        mini_batch_size: "10kb"
        task: {entry_script: score.py}
        """, "job.yml: mini_batch_size='10kb' is not allowed: for a FileDataset"),
    "cycle": ("""\
        type: pipeline
        jobs:
          one:
            command: echo ${{inputs.i}}
            inputs: {i: "${{parent.jobs.two.outputs.o}}"}
            outputs: {o: {type: uri_folder}}
          two:
            command: echo ${{inputs.i}}
            inputs: {i: "${{parent.jobs.one.outputs.o}}"}
            outputs: {o: {type: uri_folder}}
        """, "the jobs depend on each other in a cycle: one -> two -> one"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_yaml_is_one_line(tmp_path, case):
    text, expected = BAD[case]
    (tmp_path / "job.yml").write_text(textwrap.dedent(text))
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "MLTable").write_text(
        "paths: [{file: ./x.csv}]\ntransformations:\n  - read_delimited: {}\n"
        "  - filter: 'col(\"a\") > 1'\n")
    proc = daskscore(tmp_path, "run", "job.yml", "--no-progress", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("daskscore: error: ")
    assert expected in errors[0]
    assert "Job" not in proc.stdout  # nothing ran


SIDE_BY_SIDE = """\
type: pipeline
experiment_name: side-by-side
jobs:
  left:
    command: python ../meet.py ${{outputs.out}} right
    code: ./src
    outputs: {out: {type: uri_folder}}
  right:
    command: python ../meet.py ${{outputs.out}} left
    code: ./src
    outputs: {out: {type: uri_folder}}
  both:
    type: command
    command: cat ${{inputs.a}}/met ${{inputs.b}}/met > ${{outputs.out}}/both.txt
    inputs:
      a: ${{parent.jobs.left.outputs.out}}
      b: ${{parent.jobs.right.outputs.out}}
    outputs: {out: {type: uri_folder}}
"""
MEET = """\
import os, sys, time
out, other = sys.argv[1], sys.argv[2]
open(os.path.join(out, "here"), "w").close()
theirs = os.path.join(os.path.dirname(out), "..", other, "out", "here")
for _ in range(1200):  # at most 2 minutes: the other job runs at the same time
    if os.path.exists(theirs):
        break
    time.sleep(0.1)
else:
    sys.exit("the other job never started")
with open(os.path.join(out, "met"), "w") as f:
    f.write(f"{os.path.basename(os.path.dirname(out))} met {other}\\n")
"""


def test_independent_jobs_run_side_by_side_and_dependants_wait(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "meet.py").write_text(MEET)
    (tmp_path / "pipeline.yml").write_text(SIDE_BY_SIDE)
    proc = daskscore(tmp_path, "run", "pipeline.yml", "--no-progress",
                     "--output-root", "outs", timeout=200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    both = (tmp_path / "outs" / "both" / "out" / "both.txt").read_text()
    assert both.splitlines() == ["left met right", "right met left"]
    lines = proc.stdout.splitlines()
    started = lines.index("Job both: started")
    assert any(line.startswith("Job left: Completed") for line in lines[:started])
    assert any(line.startswith("Job right: Completed") for line in lines[:started])


def test_standalone_command_job(tmp_path):
    (tmp_path / "job.yml").write_text(textwrap.dedent("""\
        $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
        type: command
        name: hello
        command: >-
          python -c "import sys, mltable; print('n=' + sys.argv[1], mltable.__name__)"
          ${{inputs.n}} > ${{outputs.out}}/said.txt
        inputs:
          n: 3
        outputs:
          out: {type: uri_folder}
        environment: azureml:AzureML-sklearn-1.0@latest
        """))
    proc = daskscore(tmp_path, "run", "job.yml", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = (tmp_path / "azureml-outputs" / "hello" / "out" / "said.txt").read_text()
    assert said == "n=3 mltable\n"
    assert "environment: accepted and ignored" in proc.stderr
    assert "Job hello: Completed" in proc.stdout


SLOW_JOB = """\
type: parallel
name: slow-files
inputs:
  files: {type: uri_folder, path: ./files}
outputs:
  lines: {type: uri_file}
input_data: ${{inputs.files}}
mini_batch_size: "1"
resources: {instance_count: 1}
max_concurrency_per_instance: 1
task:
  code: ./src
  entry_script: slow.py
  append_row_to: ${{outputs.lines}}
"""
SLOW = """\
import os
import time


def init():
    pass


def run(mini_batch):
    time.sleep(float(os.environ.get("ITEM_SLEEP", "0")))
    return [os.path.basename(p) for p in mini_batch]
"""


def test_sigterm_stops_the_run_and_the_same_command_resumes(tmp_path):
    (tmp_path / "files").mkdir()
    for i in range(12):
        (tmp_path / "files" / f"f{i:02d}.txt").write_text(str(i))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "slow.py").write_text(SLOW)
    (tmp_path / "job.yml").write_text(SLOW_JOB)
    env = cli_env()
    env["ITEM_SLEEP"] = "1"
    store = StateStore(str(tmp_path / "azureml-outputs" / "slow-files"))
    proc = subprocess.Popen([*CLI, "run", "job.yml", "--no-progress"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for _ in range(1200):  # at most 2 minutes for two committed mini-batches
            if proc.poll() is not None or (
                    len(store.load_records()) >= 2):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, out + err
    assert "terminated (SIGTERM)" in err
    (record,) = runs(tmp_path)
    assert record["status"] == "Failed"
    assert record["error"] == "interrupted"
    again = daskscore(tmp_path, "run", "job.yml", "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    lines = (tmp_path / "azureml-outputs" / "slow-files" / "lines" /
             "parallel_run_step.txt").read_text().splitlines()
    assert lines == [f"f{i:02d}.txt" for i in range(12)]
    latest = runs(tmp_path)[0]
    assert latest["status"] == "Completed"
    assert latest["steps"][0]["resumed_mini_batches"] >= 2


def test_daskscore_only_key_opts_into_the_engines_csv(tmp_path):
    folder = iris(tmp_path)
    job = yaml.safe_load((folder / "job.yml").read_text())
    job["task"]["daskscore_append_row_format"] = "csv"
    (folder / "job.yml").write_text(yaml.safe_dump(job, sort_keys=False))
    proc = daskscore(tmp_path, "run", "iris/job.yml", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    scores = pd.read_csv(folder / "out" / "iris_scores.csv")
    assert list(scores.columns) == ["id", "species"]
    assert scores["id"].tolist() == list(range(1500))
