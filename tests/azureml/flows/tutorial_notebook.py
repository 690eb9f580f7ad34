# The tutorial "tutorial-pipeline-batch-scoring-classification" as a script, with
# the one added line; PipelineParameters in mini_batch_size, process_count_per_node,
# node_count, arguments and the dataset input, overridden at submission.
import daskscore.azureml

daskscore.azureml.install()  # noqa: E702 - the added line

import json
import os

import pandas as pd
from azureml.core import Dataset, Environment, Experiment, Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.data.dataset_consumption_config import DatasetConsumptionConfig
from azureml.pipeline.core import Pipeline, PipelineData, PipelineParameter
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep

ws = Workspace.from_config()
compute_name = "gpu-cluster"
compute_config = AmlCompute.provisioning_configuration(
    vm_size="STANDARD_NC6", min_nodes=0, max_nodes=2
)
compute_target = ComputeTarget.create(ws, compute_name, compute_config)
compute_target.wait_for_completion(show_output=True)

data = os.environ["FLOW_DATA"]
def_data_store = ws.get_default_datastore()
def_data_store.upload(
    src_dir=os.path.join(data, "score"),
    target_path="batchscoring/rows",
    overwrite=True,
    show_progress=False,
)
def_data_store.upload_files(
    files=[os.path.join(data, "score", "part_1.csv")],
    relative_root=os.path.join(data, "score"),
    target_path="batchscoring/first",
    overwrite=True,
)

input_rows = Dataset.Tabular.from_delimited_files(
    path=(def_data_store, "batchscoring/rows/")
)
rows_param = PipelineParameter(name="rows_param", default_value=input_rows)
rows_input = DatasetConsumptionConfig("input_rows", rows_param).as_mount()

output_dir = PipelineData(
    name="scores",
    datastore=def_data_store,
    output_path_on_compute="batchscoring/results",
)

env = Environment(name="batch-env")
env.python.conda_dependencies.add_pip_package("scikit-learn")
env.docker.base_image = (
    "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.1-cudnn8-ubuntu20.04"
)

batch_size_param = PipelineParameter(name="batch_size_param", default_value="1KB")
process_count_param = PipelineParameter(name="process_count_param", default_value=2)
node_count_param = PipelineParameter(name="node_count_param", default_value=1)
label_param = PipelineParameter(name="label_param", default_value="label")
parallel_run_config = ParallelRunConfig(
    environment=env,
    entry_script="batch_scoring.py",
    source_directory=os.environ["FLOW_SCRIPTS"],
    output_action="append_row",
    append_row_file_name="parallel_run_step.txt",
    mini_batch_size=batch_size_param,
    error_threshold=1,
    compute_target=compute_target,
    process_count_per_node=process_count_param,
    node_count=node_count_param,
)
batch_score_step = ParallelRunStep(
    name="batchscoring",
    parallel_run_config=parallel_run_config,
    inputs=[rows_input],
    output=output_dir,
    arguments=[
        "--model_name",
        os.path.join(data, "scorer.pkl"),
        "--label",
        label_param,
    ],
    allow_reuse=False,
)
pipeline = Pipeline(workspace=ws, steps=[batch_score_step])


def results(pipeline_run, local_path):
    batch_run = pipeline_run.find_step_run(batch_score_step.name)[0]
    batch_output = batch_run.get_output_data(output_dir.name)
    batch_output.download(local_path=local_path)
    result_file = os.path.join(
        local_path,
        batch_output.path_on_datastore,
        parallel_run_config.append_row_file_name,
    )
    df = pd.read_csv(result_file, delimiter=" ", header=None)
    df.columns = ["id", "label"]
    logs = []
    for root, _, files in os.walk(
        os.path.join(local_path, batch_output.path_on_datastore, "logs", "user")
    ):
        for name in files:
            if name == "entry_script.log":
                with open(os.path.join(root, name)) as f:
                    logs.append(f.read())
    return {
        "rows": dict(zip(df["id"], df["label"].astype(int))),
        "mini_batches": batch_run.get_details()["mini_batches"],
        "step_run_id": batch_run.id,
        "logs": logs,
        "status": pipeline_run.get_status(),
    }


pipeline_run = Experiment(ws, "Tutorial-Batch-Scoring").submit(pipeline)
pipeline_run.wait_for_completion(show_output=True)
first = results(pipeline_run, "inception_results")

# submit again with other values of the parameters
one_file = Dataset.Tabular.from_delimited_files(
    path=(def_data_store, "batchscoring/first/")
)
pipeline_run_2 = Experiment(ws, "Tutorial-Batch-Scoring").submit(
    pipeline,
    pipeline_parameters={
        "batch_size_param": "64KB",
        "process_count_param": 1,
        "rows_param": one_file,
        "label_param": "predicted",
    },
)
pipeline_run_2.wait_for_completion(show_output=True)
second = results(pipeline_run_2, "inception_results_2")
print("RESULT", json.dumps({"first": first, "second": second}))
