"""The import hook (``daskscore.azureml.install``) in fresh interpreters.

Each check runs in its own ``python -c`` process, so that what one installs or
imports never leaks into another (or into pytest's own interpreter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import write_script

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, extra_path: str | None = None, cwd: Path | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), extra_path) if p)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_v1_names_resolve_to_daskscore_after_install():
    out = python("""
        import json, sys
        import daskscore.azureml
        before = "azureml" in sys.modules
        installed = daskscore.azureml.install()
        from azureml.core import Model, Run, Workspace, Dataset, Datastore, Experiment
        from azureml.core.model import Model as Model2
        from azureml.core.run import Run as Run2
        from azureml.core.dataset import Dataset as Dataset2
        from azureml_user.parallel_run import EntryScript
        import daskscore as ds
        print(json.dumps({
            "installed": installed, "before": before,
            # the notebook names extend daskscore's (from_config, (datastore, path))
            "same": [Model is Model2, Run is Run2, Dataset is Dataset2,
                     issubclass(Dataset, ds.Dataset),
                     issubclass(Workspace, ds.Workspace),
                     issubclass(Datastore, ds.Datastore),
                     issubclass(Experiment, ds.Experiment),
                     EntryScript is ds.EntryScript],
            "model_base": issubclass(Model, ds.Model),
            "again": daskscore.azureml.install(),
            "submodule": __import__("azureml").core.run.Run is Run,
        }))
    """)
    assert out == {"installed": True, "before": False, "same": [True] * 8,
                   "model_base": True, "again": True, "submodule": True}


def test_a_name_not_provided_fails_with_one_line_naming_it():
    out = python("""
        import json
        import daskscore.azureml
        daskscore.azureml.install()
        import azureml.core
        found = {}
        for what, code in [
            ("from", "from azureml.core import InferenceConfig"),
            ("module", "import azureml.train.estimator"),
            ("attribute", "azureml.core.Keyvault"),
            ("user", "from azureml_user.parallel_run import Nothing"),
            ("method", "from azureml.core import Run; "
                       "Run.get_context().log_image('x', plot=None)"),
            ("model", "from azureml.core import Model; Model.deploy"),
        ]:
            try:
                exec(code)
                found[what] = None
            except ImportError as exc:
                found[what] = [type(exc).__name__, str(exc)]
        found["hasattr_dunder"] = hasattr(azureml.core, "__wrapped__")
        print(json.dumps(found))
    """)
    assert out.pop("hasattr_dunder") is False
    names = {"from": "azureml.core.InferenceConfig", "module": "azureml.train",
             "attribute": "azureml.core.Keyvault",
             "user": "azureml_user.parallel_run.Nothing",
             "method": "azureml.core.Run.log_image",
             "model": "azureml.core.Model.deploy"}
    for what, (kind, message) in out.items():
        assert kind in ("NotProvidedError", "ModuleNotProvidedError")
        assert message.startswith(f"{names[what]}: daskscore does not provide")
        assert "\n" not in message and "docs/migrating-from-azureml.md" in message


def test_entry_script_off_the_cluster_with_the_same_import(tmp_path):
    out = python("""
        import json, os
        import daskscore.azureml
        daskscore.azureml.install()
        from azureml_user.parallel_run import EntryScript
        from azureml.core import Run
        es = EntryScript()
        es.logger.info("hello from a notebook")
        run = Run.get_context()
        run.log("accuracy", 0.5)
        run.log("accuracy", 0.75)
        run.log_row("fit", a=1, b=2)
        print(json.dumps({"output_dir": es.output_dir, "id": run.id,
                          "metrics": run.get_metrics(), "status": run.get_status(),
                          "exists": os.path.isdir(es.output_dir)}))
    """, cwd=tmp_path)
    assert out["output_dir"] == str(tmp_path / "daskscore-local" / "outputs")
    assert out["exists"] and out["id"].startswith("OfflineRun_")
    assert out["metrics"] == {"accuracy": [0.5, 0.75], "fit": {"a": [1], "b": [2]}}
    assert out["status"] == "Running"


def test_offline_run_logs_to_the_console(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = ("import daskscore.azureml; daskscore.azureml.install(); "
            "from azureml.core import Run; Run.get_context().log('loss', 0.25)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Attempted to log scalar metric loss:\n0.25" in proc.stdout


FIND_SPEC = """
    import importlib.util, json, sys
    import daskscore.azureml
    installed = daskscore.azureml.install({force})
    spec = importlib.util.find_spec("azureml.core")
    print(json.dumps({{"installed": installed, "origin": spec.origin,
                      "loader": type(spec.loader).__name__}}))
"""

WHERE_SCRIPT = """
    import importlib.util

    ORIGIN = importlib.util.find_spec("azureml.core").origin


    def init():
        pass


    def run(mini_batch):
        return [ORIGIN for _ in mini_batch]
"""


@pytest.mark.slow
def test_a_real_azureml_core_is_not_shadowed(tmp_path, shared_client):
    """The real wheel, installed without its dependencies (so it is found, not
    imported: ``import azureml.core`` would need them): it wins over the hook, in
    a notebook and in the runner; ``install(force=True)`` overrides it."""
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), "azureml-core"],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    real = str(target / "azureml" / "core" / "__init__.py")
    assert os.path.isfile(real)
    notebook = python(FIND_SPEC.format(force=""), extra_path=str(target))
    assert notebook == {"installed": False, "origin": real,
                        "loader": "SourceFileLoader"}
    forced = python(FIND_SPEC.format(force="force=True"), extra_path=str(target))
    assert forced["installed"] is True and forced["loader"] == "_AliasLoader"

    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a")
    script = write_script(tmp_path / "src", WHERE_SCRIPT)
    cfg = ds.ParallelRunConfig(entry_script=str(script), error_threshold=0,
                               environment_variables={"PYTHONPATH": str(target)})
    step = ds.ParallelRunStep(name="real-sdk", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(files))],
                              output=str(tmp_path / "out"))
    result = step.run(client=shared_client)
    assert result.status == "Completed"
    assert (tmp_path / "out" / "parallel_run_step.txt").read_text().strip() == real


def test_a_plain_script_process_logs_into_a_run_given_by_the_environment(tmp_path):
    """What a pipeline's plain-script step hands its process (``DASKSCORE_RUN``)."""
    from daskscore.output.runlog import read_events, run_summary

    folder = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), DASKSCORE_RUN=json.dumps(
        {"id": "p1_copy", "name": "copy", "parent": "p1", "experiment": "mm",
         "folder": str(folder)}))
    code = ("import daskscore.azureml; daskscore.azureml.install(); "
            "from azureml.core import Run; r = Run.get_context(); "
            "r.log('copied', 3); print(r.id, r.parent.id, r.experiment.name)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["p1_copy", "p1", "mm"]
    assert run_summary(read_events(str(folder)))["p1_copy"]["metrics"] == {
        "copied": 3}
