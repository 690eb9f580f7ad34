# The many-models solution accelerator's forecasting notebook as a script, with the
# one added line: a ParallelRunStep forecasts with each model, then the
# copy-predictions PythonScriptStep reads its PipelineData output folder.
import daskscore.azureml

daskscore.azureml.install()  # noqa: E702 - the added line

import json
import os

import pandas as pd
from azureml.core import Dataset, Environment, Experiment, Workspace
from azureml.core.compute import AmlCompute
from azureml.core.runconfig import RunConfiguration
from azureml.data import OutputFileDatasetConfig
from azureml.pipeline.core import Pipeline, PipelineData, PipelineParameter
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep, PythonScriptStep

ws = Workspace.from_config()
dstore = ws.get_default_datastore()
forecast_ds = Dataset.File.from_files(path=(dstore, "oj_sales_data/"), validate=False)
scripts = os.environ["FLOW_SCRIPTS"]
compute = AmlCompute(ws, "cpucluster")
forecast_env = Environment(name="many_models_environment")

parallel_run_config = ParallelRunConfig(
    source_directory=scripts,
    entry_script="mm_forecast.py",
    mini_batch_size="2",
    run_invocation_timeout=180,
    error_threshold=-1,
    output_action="append_row",
    append_row_file_name="forecasts.parquet",
    environment=forecast_env,
    process_count_per_node=2,
    compute_target=compute,
    node_count=1,
)
forecasting_output = PipelineData(name="forecasting_output", datastore=dstore)
parallel_run_step = ParallelRunStep(
    name="many-models-forecasting",
    parallel_run_config=parallel_run_config,
    inputs=[forecast_ds.as_named_input("forecast_10_models")],
    output=forecasting_output,
    arguments=[
        "--models_dir",
        os.path.abspath("models"),
        "--horizon",
        PipelineParameter(name="horizon", default_value=4),
    ],
    allow_reuse=False,
)

run_config = RunConfiguration()
run_config.environment = forecast_env
predictions = OutputFileDatasetConfig(
    name="predictions", destination=(dstore, "oj_predictions/{run-id}")
)
copy_predictions_step = PythonScriptStep(
    name="copy_predictions",
    script_name="copy_predictions.py",
    compute_target=compute,
    source_directory=scripts,
    inputs=[forecasting_output],
    outputs=[predictions],
    arguments=[
        "--parallel_run_step_output",
        forecasting_output,
        "--output_dir",
        predictions,
        "--file_name",
        "predictions.csv",
    ],
    runconfig=run_config,
    allow_reuse=False,
)
# only the last step is listed: the pipeline finds the step it reads from
pipeline = Pipeline(workspace=ws, steps=[copy_predictions_step])
run = Experiment(ws, "manymodels-forecasting-pipeline").submit(
    pipeline, pipeline_parameters={"horizon": 3}
)
run.wait_for_completion(show_output=True)

copy_run = run.find_step_run("copy_predictions")[0]
output = copy_run.get_output_data("predictions")
local = output.download("forecasting_results")
frame = pd.read_csv(os.path.join(local, "predictions.csv"))
print(
    "RESULT",
    json.dumps(
        {
            "steps": [s.name for s in run.get_steps()],
            "path_on_datastore": output.path_on_datastore,
            "step_run_id": copy_run.id,
            "predictions": frame.to_dict(orient="records"),
        }
    ),
)
