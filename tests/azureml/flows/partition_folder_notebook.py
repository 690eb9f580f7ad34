# The v1 sample "partition-file-dataset" (partition per folder) as a script, with
# the one added line: files /{user}/{season}/{genres}.wav, one mini-batch per
# (user, genres).
import daskscore.azureml

daskscore.azureml.install()  # noqa: E702 - the added line

import json
import os

from azureml.core import Dataset, Datastore, Experiment, Workspace
from azureml.data import OutputFileDatasetConfig
from azureml.pipeline.core import Pipeline
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep

ws = Workspace.from_config()
compute_target = ws.compute_targets["cpu-cluster"]
datastore = Datastore.get(ws, "workspaceblobstore")
datastore.upload(
    src_dir=os.path.join(os.environ["FLOW_DATA"], "audio"),
    target_path="audio",
    overwrite=True,
)

partitioned_dataset = Dataset.File.from_files(
    path=(datastore, "audio/**/*.wav"),
    validate=False,
    partition_format="/{user}/{season}/{genres}.wav",
)
partitioned_dataset = partitioned_dataset.register(
    ws, "partitioned_audio_files", create_new_version=True
)
print("partition keys:", partitioned_dataset.partition_keys)

parallel_run_config = ParallelRunConfig(
    source_directory=os.environ["FLOW_SCRIPTS"],
    entry_script="audio_partition.py",
    partition_keys=["user", "genres"],
    error_threshold=-1,
    output_action="append_row",
    append_row_file_name="parallel_run_step.txt",
    compute_target=compute_target,
    node_count=1,
    run_invocation_timeout=600,
)
output = OutputFileDatasetConfig(
    name="partition_output", destination=(datastore, "partition/{run-id}")
)
parallel_run_step = ParallelRunStep(
    name="partitioned-audio",
    inputs=[partitioned_dataset.as_named_input("partitioned_audio_files")],
    output=output,
    parallel_run_config=parallel_run_config,
    allow_reuse=False,
)
pipeline = Pipeline(workspace=ws, steps=[parallel_run_step])
pipeline_run = Experiment(ws, "partition-by-folder").submit(pipeline)
pipeline_run.wait_for_completion(show_output=True)

step_run = pipeline_run.find_step_run(parallel_run_step.name)[0]
data = step_run.get_output_data("partition_output")
local = data.download(local_path="partition_results")
with open(os.path.join(local, "parallel_run_step.txt")) as f:
    lines = [line.strip() for line in f if line.strip()]
print(
    "RESULT",
    json.dumps(
        {
            "keys": partitioned_dataset.partition_keys,
            "lines": lines,
            "path_on_datastore": data.path_on_datastore,
            "step_run_id": step_run.id,
        }
    ),
)
