"""The batch-inference tutorial, end to end, with Dask in place of the cloud.

This follows the original walk-through step by step: a workspace, a datastore
holding MNIST images, a registered FileDataset, a registered TensorFlow model, the
entry script ``digit_identification.py``, a ParallelRunStep in a pipeline,
submitted to an experiment and watched until it completes. Then it measures the
accuracy of the output against the held-out labels.

Run it with ``python examples/mnist/tutorial.py [FOLDER]`` (``make demo``);
everything goes to FOLDER (default ``demo-output/mnist``). Run it twice: the
second run reuses the first run's output (``allow_reuse=True``).

Needs the ``tensorflow`` extra: ``pip install 'daskscore[tensorflow]' scikit-learn``.
"""

from __future__ import annotations

import os
import sys

import daskscore as ds

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import build_data  # noqa: E402  (the stand-in for the tutorial's downloads)


def main(folder: str, limit: int | None = None) -> int:
    """Run the tutorial in ``folder``; 0 when the accuracy is at least 0.9.

    ``limit`` caps the number of images (the test suite scores a few hundred).
    """
    # -- 0. The data and the model the original downloads ------------------------------
    # MNIST-style PNGs (labels kept apart) and a small Keras model trained here,
    # saved as a TensorFlow SavedModel in FOLDER/models.
    print("Preparing the sample images and training the model ...", flush=True)
    build_data.build_images(folder, limit=limit)
    model_dir = build_data.train_model(folder)

    # -- 1. The workspace --------------------------------------------------------------
    # A workspace is a folder of plain files (or a URL to share one on blob storage);
    # daskscore.json points at it, as config.json does in the original.
    ds.Workspace(os.path.join(folder, ".daskscore")).write_config(folder)
    ws = ds.Workspace.from_config(folder)

    # -- 2. Datastores -----------------------------------------------------------------
    # The original registers the public blob container "sampledata" of the account
    # "pipelinedata":
    #     ds.Datastore.register_azure_blob_container(
    #         ws, datastore_name="mnist_datastore", container_name="sampledata",
    #         account_name="pipelinedata", anonymous=True, overwrite=True)
    # Here the images are on the local disk, so the datastore is a local folder.
    mnist_blob = ds.Datastore.register_local(ws, datastore_name="mnist_datastore",
                                             path=folder, overwrite=True)
    # Outputs go to the workspace's default datastore.
    def_data_store = ws.get_default_datastore()

    # -- 3. Inputs and outputs ---------------------------------------------------------
    mnist_ds_name = "mnist_sample_data"
    path_on_datastore = mnist_blob.path("mnist/")
    input_mnist_ds = ds.Dataset.File.from_files(path=path_on_datastore)
    registered_mnist_ds = input_mnist_ds.register(ws, mnist_ds_name,
                                                  create_new_version=True)
    named_mnist_ds = registered_mnist_ds.as_named_input(mnist_ds_name)
    # The labels are a dataset too (kept for the accuracy check at the end).
    labels_ds = ds.Dataset.Tabular.from_delimited_files(
        mnist_blob.path("labels/labels.csv")
    ).register(ws, "mnist_labels", create_new_version=True)

    output_dir = ds.PipelineData(name="inferences", datastore=def_data_store,
                                 output_path_on_compute="mnist/results")

    # -- 4. Compute --------------------------------------------------------------------
    # No AmlCompute cluster: each step starts an embedded Dask cluster (one worker
    # process per core) unless it is given a distributed.Client of any Dask cluster.

    # -- 5. The model ------------------------------------------------------------------
    model = ds.Model.register(workspace=ws, model_path=model_dir, model_name="mnist",
                              tags={"pretrained": "mnist"},
                              description="Mnist trained tensorflow model")

    # -- 6. The entry script: scripts/digit_identification.py --------------------------
    scripts_folder = os.path.join(HERE, "scripts")

    # -- 7. The configuration ----------------------------------------------------------
    # (environment / compute_target of the original: this Python environment and the
    # Dask cluster; node_count=4 asks for 4 nodes, the embedded cluster uses the cores
    # it has.)
    parallel_run_config = ds.ParallelRunConfig(
        source_directory=scripts_folder,
        entry_script="digit_identification.py",
        mini_batch_size="5",
        error_threshold=10,
        output_action="append_row",
        node_count=4,
        run_invocation_timeout=120,
    )

    # -- 8. The step -------------------------------------------------------------------
    parallelrun_step = ds.ParallelRunStep(
        name="batch-mnist",
        models=[model],
        parallel_run_config=parallel_run_config,
        inputs=[named_mnist_ds],
        output=output_dir,
        arguments=[],
        allow_reuse=True,
    )

    # -- 9. The pipeline, submitted ----------------------------------------------------
    pipeline = ds.Pipeline(workspace=ws, steps=[parallelrun_step])
    pipeline_run = ds.Experiment(ws, "digit_identification").submit(pipeline)

    # -- 10. Watch it ------------------------------------------------------------------
    pipeline_run.wait_for_completion(show_output=True)

    # -- The results -------------------------------------------------------------------
    step_run = pipeline_run.find_step_run("batch-mnist")[0]
    score, count = build_data.accuracy(step_run.output_file, labels_ds.path)
    print()
    print(f"Run:      {pipeline_run.id} ({pipeline_run.status})")
    print(f"Output:   {step_run.output_file}")
    print(f"Accuracy: {score:.3f} on {count} held-out images")
    print(f"Run history: daskscore runs show {pipeline_run.id} "
          f"--workspace {ws.url}")
    return 0 if score >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main(os.path.abspath(sys.argv[1] if len(sys.argv) > 1
                                  else build_data.DEFAULT_FOLDER)))
