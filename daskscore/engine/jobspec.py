"""What a job tells its workers and runners, built once on the client.

The job spec travels inside the job's :class:`~daskscore.worker.plugin.ScoringPlugin`
to every worker; each worker derives its runner's setup from it. Model and input
details are split so that credentials never reach a runner's environment.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..datasets import FileDataset, TabularDataset
from ..errors import ConfigError

__all__ = ["model_options", "models_env", "named_inputs", "public_model_entry"]


def _model_entry(model: Any) -> dict[str, Any]:
    name = getattr(model, "name", None)
    path = getattr(model, "path", None)
    if not name or path is None:
        raise ConfigError(
            "models",
            model,
            "registered models (objects with .name, "
            ".version and .path), e.g. ds.Model(ws, 'mnist')",
        )
    entry = {
        "name": name,
        "version": getattr(model, "version", None),
        "path": os.fspath(path),
    }
    options = getattr(model, "storage_options", None)
    if options:
        entry["storage_options"] = dict(options)
    return entry


def public_model_entry(model: Any) -> dict[str, Any]:
    """A model's name, version and path: what may be shown (no credentials)."""
    entry = _model_entry(model)
    entry.pop("storage_options", None)
    return entry


def models_env(models: list[Any]) -> dict[str, str]:
    """The runner's ``DASKSCORE_MODELS`` variable: names, versions and paths.

    Credentials stay out of it (a script may print its environment, and child
    processes inherit it); they reach the runner in its setup message, see
    :func:`model_options`.
    """
    if not models:
        return {}
    entries = [public_model_entry(m) for m in models]
    return {"DASKSCORE_MODELS": json.dumps(entries, default=str)}


def model_options(models: list[Any]) -> dict[str, dict[str, Any]]:
    """Storage options of the models in remote workspaces, by model path."""
    out = {}
    for model in models:
        entry = _model_entry(model)
        if entry.get("storage_options"):
            out[entry["path"]] = entry["storage_options"]
    return out


def named_inputs(inputs: list[Any], side_inputs: list[Any]) -> dict[str, Any]:
    """What ``EntryScript().inputs[name]`` gives for named and side inputs."""
    out: dict[str, Any] = {}
    for dataset in inputs:
        if getattr(dataset, "input_name", None):
            out[dataset.input_name] = (
                dataset.path
                if not isinstance(dataset.path, list)
                else list(dataset.path)
            )
    for i, dataset in enumerate(side_inputs):
        name = getattr(dataset, "input_name", None) or f"side_input_{i}"
        if isinstance(dataset, FileDataset):
            out[name] = dataset.to_path()
        elif isinstance(dataset, TabularDataset) and dataset.frame is None:
            out[name] = dataset.path
        else:
            out[name] = os.fspath(getattr(dataset, "path", dataset))
    return out
