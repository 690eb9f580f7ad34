# The many-models solution accelerator's training notebook as a script, with the
# one added line: one model per file (store and brand), trained in parallel.
import daskscore.azureml

daskscore.azureml.install()  # noqa: E702 - the added line

import json
import os

from azureml.core import Dataset, Environment, Experiment, Workspace
from azureml.core.compute import AmlCompute
from azureml.core.conda_dependencies import CondaDependencies
from azureml.pipeline.core import Pipeline, PipelineData, PipelineParameter
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep

ws = Workspace.from_config()
dstore = ws.get_default_datastore()
dstore.upload(
    src_dir=os.path.join(os.environ["FLOW_DATA"], "oj_sales"),
    target_path="oj_sales_data",
    overwrite=True,
    show_progress=True,
)
train_ds = Dataset.File.from_files(path=dstore.path("oj_sales_data/"), validate=False)
train_ds = train_ds.register(ws, "oj_data_small_train", create_new_version=True)

train_env = Environment(name="many_models_environment")
train_conda_deps = CondaDependencies.create(
    pip_packages=["sklearn", "pandas", "joblib", "azureml-defaults", "azureml-core"]
)
train_env.python.conda_dependencies = train_conda_deps

cpu_cluster_name = "cpucluster"
compute = AmlCompute(ws, cpu_cluster_name)

processes_per_node = 2
node_count = 1
timeout = 180
parallel_run_config = ParallelRunConfig(
    source_directory=os.environ["FLOW_SCRIPTS"],
    entry_script="mm_train.py",
    mini_batch_size="1",
    run_invocation_timeout=timeout,
    error_threshold=-1,
    output_action="append_row",
    environment=train_env,
    process_count_per_node=processes_per_node,
    compute_target=compute,
    node_count=node_count,
)
output_dir = PipelineData(name="training_output", datastore=dstore)
models_dir = PipelineParameter(
    name="models_dir", default_value=os.path.abspath("models")
)
parallel_run_step = ParallelRunStep(
    name="many-models-training",
    parallel_run_config=parallel_run_config,
    allow_reuse=False,
    inputs=[train_ds.as_named_input("train_10_models")],
    output=output_dir,
    arguments=["--target_column", "quantity", "--models_dir", models_dir],
)
pipeline = Pipeline(workspace=ws, steps=[parallel_run_step])
run = Experiment(ws, "manymodels-training-pipeline").submit(pipeline)
run.wait_for_completion(show_output=True)

step_run = run.find_step_run("many-models-training")[0]
output = step_run.get_output_data("training_output")
local = output.download("training_results")
with open(os.path.join(local, "parallel_run_step.txt")) as f:
    trained = sorted(line.strip() for line in f if line.strip())
print(
    "RESULT",
    json.dumps(
        {
            "trained": trained,
            "models": sorted(os.listdir("models")),
            "status": step_run.get_status(),
            "metrics": step_run.get_metrics(),
            "run_metrics": run.get_metrics(),
        }
    ),
)
