# The v1 MNIST sample with its TensorFlow 1 model: the model registered in the
# workspace and handed to the step, the entry script finding it with
# Model.get_model_path; the one added line at the top, local data (FLOW_DATA).
import daskscore.azureml

daskscore.azureml.install()  # noqa: E702 - the added line

import json
import os

from azureml.core import Dataset, Experiment, Model, Workspace
from azureml.pipeline.core import Pipeline, PipelineData
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep

ws = Workspace.from_config()
data = os.environ["FLOW_DATA"]
def_data_store = ws.get_default_datastore()
def_data_store.upload(
    src_dir=os.path.join(data, "mnist"), target_path="mnist", overwrite=True
)
model = Model.register(
    workspace=ws,
    model_path=os.path.join(data, "mnist-model"),
    model_name="mnist-tf1",
    tags={"framework": "tf1"},
)
input_mnist_ds = Dataset.File.from_files(path=(def_data_store, "mnist/"))
output_dir = PipelineData(name="inferences", datastore=def_data_store)

parallel_run_config = ParallelRunConfig(
    source_directory=os.environ["FLOW_SCRIPTS"],
    entry_script="tf1_digit_identification.py",
    mini_batch_size="5",
    error_threshold=0,
    output_action="append_row",
    append_row_file_name="mnist_outputs.txt",
    process_count_per_node=2,
    node_count=1,
    run_invocation_timeout=120,
)
parallelrun_step = ParallelRunStep(
    name="predict-digits-mnist-tf1",
    parallel_run_config=parallel_run_config,
    inputs=[input_mnist_ds.as_named_input("mnist")],
    output=output_dir,
    models=[model],
    allow_reuse=False,
)
pipeline_run = Experiment(ws, "digit_identification").submit(
    Pipeline(workspace=ws, steps=[parallelrun_step])
)
pipeline_run.wait_for_completion(show_output=True)

prediction_run = pipeline_run.find_step_run(parallelrun_step.name)[0]
prediction_output = prediction_run.get_output_data(output_dir.name)
prediction_output.download(local_path="mnist_results")
result_file = os.path.join(
    "mnist_results",
    prediction_output.path_on_datastore,
    parallel_run_config.append_row_file_name,
)
with open(result_file) as f:
    pairs = [line.strip().split(": ") for line in f if line.strip()]
print(
    "RESULT",
    json.dumps(
        {
            "model": [model.name, model.version, model.tags],
            "predictions": {name: int(label) for name, label in pairs},
        }
    ),
)
