# The v1 sample "tabular-dataset-inference-iris" as a script, with the one added line.
import daskscore.azureml

daskscore.azureml.install()  # noqa: E702 - the added line

import json
import os

import pandas as pd
from azureml.core import Dataset, Environment, Experiment, Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.runconfig import DockerConfiguration
from azureml.data import OutputFileDatasetConfig
from azureml.pipeline.core import Pipeline
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep

ws = Workspace.from_config()
compute_target = ComputeTarget.create(
    ws,
    "cpu-cluster",
    AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", max_nodes=2),
)
compute_target.wait_for_completion(show_output=True)

data = os.environ["FLOW_DATA"]
datastore = ws.get_default_datastore()
datastore.upload_files(
    files=[
        os.path.join(data, "iris", n)
        for n in sorted(os.listdir(os.path.join(data, "iris")))
    ],
    relative_root=data,
    target_path="iris_data",
    overwrite=True,
)

iris_ds_name = "iris_data"
path_on_datastore = datastore.path("iris_data/iris/")
input_iris_ds = Dataset.Tabular.from_delimited_files(
    path=[(datastore, "iris_data/iris/*.csv")], validate=False
)
print("first rows:", input_iris_ds.take(3).to_pandas_dataframe().shape)
named_iris_ds = input_iris_ds.register(
    ws, iris_ds_name, create_new_version=True
).as_named_input(iris_ds_name)

output_folder = OutputFileDatasetConfig(name="inferences")

predict_env = Environment(name="predict_environment")
predict_env.docker.base_image = "mcr.microsoft.com/azureml/base:latest"
parallel_run_config = ParallelRunConfig(
    source_directory=os.environ["FLOW_SCRIPTS"],
    entry_script="iris_score.py",
    mini_batch_size="1KB",
    error_threshold=5,
    output_action="append_row",
    environment=predict_env,
    compute_target=compute_target,
    node_count=1,
    run_invocation_timeout=600,
)
distributed_csv_iris_step = ParallelRunStep(
    name="example-iris",
    inputs=[named_iris_ds],
    output=output_folder,
    parallel_run_config=parallel_run_config,
    arguments=["--model", os.path.join(data, "iris.pkl")],
    allow_reuse=False,
)
pipeline = Pipeline(workspace=ws, steps=[distributed_csv_iris_step])
pipeline_run = Experiment(ws, "iris-prs").submit(pipeline)
pipeline_run.wait_for_completion(show_output=True)

prediction_run = pipeline_run.find_step_run(distributed_csv_iris_step.name)[0]
prediction_output = prediction_run.get_output_data(output_folder.name)
prediction_output.download(local_path="iris_results")
result_file = os.path.join(
    "iris_results", prediction_output.path_on_datastore, "parallel_run_step.txt"
)
df = pd.read_csv(result_file, delimiter=" ", header=None)
df.columns = ["sepal.length", "sepal.width", "petal.length", "petal.width", "variety"]
print(
    "RESULT",
    json.dumps(
        {
            "rows": int(df.shape[0]),
            "varieties": df["variety"].tolist(),
            "ignored": DockerConfiguration(use_docker=True).use_docker,
        }
    ),
)
