# The v1 sample "file-dataset-image-inference-mnist" as a script: its cells as
# they are, with the one added line at the top; the cells that provision compute
# or download data are replaced by local data (FLOW_DATA).
import daskscore.azureml

daskscore.azureml.install()  # noqa: E702 - the added line

import json
import os

import pandas as pd
from azureml.core import Dataset, Datastore, Environment, Experiment, Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.conda_dependencies import CondaDependencies
from azureml.core.runconfig import DEFAULT_CPU_IMAGE
from azureml.pipeline.core import Pipeline, PipelineData
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep

ws = Workspace.from_config()
print(ws.name, ws.resource_group, ws.location, ws.subscription_id, sep="\n")

# choose a name for your cluster
compute_name = os.environ.get("AML_COMPUTE_CLUSTER_NAME", "cpu-cluster")
if compute_name in ws.compute_targets:
    compute_target = ws.compute_targets[compute_name]
    if compute_target and type(compute_target) is AmlCompute:
        print("found compute target: " + compute_name)
else:
    provisioning_config = AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", min_nodes=0, max_nodes=4
    )
    compute_target = ComputeTarget.create(ws, compute_name, provisioning_config)
    compute_target.wait_for_completion(
        show_output=True, min_node_count=None, timeout_in_minutes=20
    )

# local data instead of the sample's public blob container
data = os.environ["FLOW_DATA"]
def_data_store = ws.get_default_datastore()
def_data_store.upload(
    src_dir=os.path.join(data, "mnist"),
    target_path="mnist",
    overwrite=True,
    show_progress=True,
)
mnist_blob = Datastore.get(ws, "workspaceblobstore")

mnist_ds_name = "mnist_sample_data"
path_on_datastore = mnist_blob.path("mnist/")
input_mnist_ds = Dataset.File.from_files(path=path_on_datastore, validate=False)
registered_mnist_ds = input_mnist_ds.register(
    ws, mnist_ds_name, create_new_version=True
)
named_mnist_ds = registered_mnist_ds.as_named_input(mnist_ds_name)

output_dir = PipelineData(
    name="inferences", datastore=def_data_store, output_path_on_compute="mnist/results"
)

batch_conda_deps = CondaDependencies.create(
    pip_packages=["scikit-learn", "pillow", "azureml-core"]
)
batch_env = Environment(name="batch_environment")
batch_env.python.conda_dependencies = batch_conda_deps
batch_env.docker.base_image = DEFAULT_CPU_IMAGE

scripts_folder = os.environ["FLOW_SCRIPTS"]
parallel_run_config = ParallelRunConfig(
    source_directory=scripts_folder,
    entry_script="digit_identification.py",
    mini_batch_size="5",
    error_threshold=10,
    output_action="append_row",
    append_row_file_name="mnist_outputs.txt",
    environment=batch_env,
    compute_target=compute_target,
    process_count_per_node=2,
    node_count=1,
)
parallelrun_step = ParallelRunStep(
    name="predict-digits-mnist",
    parallel_run_config=parallel_run_config,
    inputs=[named_mnist_ds],
    output=output_dir,
    arguments=["--model", os.path.join(data, "digits.pkl")],
    allow_reuse=True,
)

pipeline = Pipeline(workspace=ws, steps=[parallelrun_step])
experiment = Experiment(ws, "digit_identification")
pipeline_run = experiment.submit(pipeline)
pipeline_run.wait_for_completion(show_output=True)

# view the results
prediction_run = pipeline_run.find_step_run(parallelrun_step.name)[0]
prediction_output = prediction_run.get_output_data(output_dir.name)
prediction_output.download(local_path="mnist_results")
result_file = os.path.join(
    "mnist_results",
    prediction_output.path_on_datastore,
    parallel_run_config.append_row_file_name,
)
df = pd.read_csv(result_file, delimiter=":", header=None)
df.columns = ["Filename", "Prediction"]
print("Prediction has ", df.shape[0], " rows")
print(
    "RESULT",
    json.dumps(
        {
            "result_file": result_file,
            "path_on_datastore": prediction_output.path_on_datastore,
            "step_run_id": prediction_run.id,
            "rows": int(df.shape[0]),
            "predictions": dict(zip(df["Filename"], df["Prediction"].astype(int))),
        }
    ),
)
