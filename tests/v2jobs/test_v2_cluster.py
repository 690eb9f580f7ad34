"""The v2 examples through ``daskscore run --scheduler`` on a ``dask scheduler`` /
``dask worker`` cluster (the shared one of ``cluster_procs``: nodes ``na`` with two
worker processes and ``nb`` with one)."""

from __future__ import annotations

import pytest
from examples_data import iris, many_models, mnist
from test_v2_cli import check_iris, check_many_models, check_mnist, daskscore

pytest_plugins = ["cluster_procs"]
pytestmark = pytest.mark.slow


def test_standalone_parallel_job_on_a_cluster(tmp_path, dask_cluster):
    folder = iris(tmp_path)
    proc = daskscore(tmp_path, "run", "iris/job.yml", "--no-progress", "--scheduler",
                     dask_cluster.address)
    check_iris(folder, proc)


def test_pipeline_on_a_cluster_runs_the_command_on_a_worker(tmp_path, dask_cluster):
    folder = many_models(tmp_path)
    proc = daskscore(tmp_path, "run", "many_models/pipeline.yml", "--no-progress",
                     "--scheduler", dask_cluster.address, "--output-root", "outs")
    check_many_models(folder, tmp_path / "outs", proc)
    # the command ran as a task of the cluster
    with dask_cluster.client() as client:
        keys = client.run_on_scheduler(
            lambda dask_scheduler: [str(t) for t in dask_scheduler.task_prefixes])
    assert any(k.startswith("daskscore-command-partition") for k in keys), keys


def test_pngs_with_runner_flags_on_a_cluster(tmp_path, dask_cluster):
    folder = mnist(tmp_path)
    proc = daskscore(tmp_path, "run", "mnist/pipeline.yml", "--no-progress",
                     "--scheduler", dask_cluster.address)
    check_mnist(folder, tmp_path / "azureml-outputs" / "mnist-batch-inference", proc)
