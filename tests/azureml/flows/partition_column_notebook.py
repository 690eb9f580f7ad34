# The v1 sample "partition-tabular-dataset" (partition per column) as a script,
# with the one added line: partition_by() on two columns, then one mini-batch per
# (store, brand).
import daskscore.azureml

daskscore.azureml.install()  # noqa: E702 - the added line

import json
import os

import pandas as pd
from azureml.core import Dataset, Experiment, Workspace
from azureml.data import OutputFileDatasetConfig
from azureml.pipeline.core import Pipeline
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep

ws = Workspace.from_config()
datastore = ws.get_default_datastore()
datastore.upload(
    src_dir=os.path.join(os.environ["FLOW_DATA"], "sales"),
    target_path="sales",
    overwrite=True,
)
dataset = Dataset.Tabular.from_delimited_files(path=(datastore, "sales/*.csv"))
partitioned = dataset.partition_by(
    partition_keys=["store", "brand"],
    target=(datastore, "partition_by_store_brand"),
    name="sales_partitioned",
)
print("partition keys:", partitioned.partition_keys)

parallel_run_config = ParallelRunConfig(
    source_directory=os.environ["FLOW_SCRIPTS"],
    entry_script="sales_partition.py",
    partition_keys=["store", "brand"],
    error_threshold=-1,
    output_action="append_row",
    append_row_file_name="sales_summary.csv",
    compute_target="cpu-cluster",
    node_count=1,
)
output = OutputFileDatasetConfig(name="summary")
step = ParallelRunStep(
    name="summarize-sales",
    inputs=[partitioned.as_named_input("partitioned_tabular_input")],
    output=output,
    parallel_run_config=parallel_run_config,
    allow_reuse=False,
)
pipeline_run = Experiment(ws, "partition-by-column").submit(
    Pipeline(workspace=ws, steps=[step])
)
pipeline_run.wait_for_completion(show_output=True)

data = pipeline_run.find_step_run(step.name)[0].get_output_data("summary")
local = data.download(local_path="summary_results")
summary = pd.read_csv(os.path.join(local, "sales_summary.csv"))
folders = sorted(
    os.path.relpath(root, datastore.path("partition_by_store_brand").url)
    for root, _, files in os.walk(datastore.path("partition_by_store_brand").url)
    if files
)
print(
    "RESULT",
    json.dumps(
        {
            "keys": partitioned.partition_keys,
            "folders": folders,
            "summary": summary.to_dict(orient="records"),
        }
    ),
)
