"""Azure ML v1 compute and environment names, accepted and ignored.

Backs ``azureml.core.compute``, ``azureml.core.environment``,
``azureml.core.runconfig`` and ``azureml.core.conda_dependencies``. daskscore
runs on the current Dask cluster (an embedded one, or the ``distributed.Client``
the notebook made), in the current Python environment: these objects keep the
attributes notebooks set and do nothing else, each saying so in one info line.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "DEFAULT_CPU_IMAGE",
    "DEFAULT_GPU_IMAGE",
    "AmlCompute",
    "AmlComputeProvisioningConfiguration",
    "ComputeTarget",
    "ComputeTargetException",
    "CondaDependencies",
    "DockerConfiguration",
    "DockerSection",
    "Environment",
    "PythonSection",
    "RunConfiguration",
]

logger = logging.getLogger("daskscore.azureml")

DEFAULT_CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.1-cudnn8-ubuntu20.04"

_said: set[str] = set()


def _ignored(what: str) -> None:
    """One info line per kind of object: it is accepted and does nothing."""
    if what in _said:
        return
    _said.add(what)
    logger.info(
        "daskscore.azureml: %s is accepted and ignored: daskscore runs on "
        "the current Dask cluster, in the current Python environment",
        what,
    )


class ComputeTargetException(Exception):
    """What the v1 SDK raises for a missing compute target (never raised here:
    every name is the current Dask cluster)."""


class CondaDependencies:
    """The packages an environment would install: kept, never installed."""

    def __init__(
        self, conda_dependencies_file_path: str | None = None, **_: Any
    ) -> None:
        _ignored("CondaDependencies")
        self.conda_packages: list[str] = []
        self.pip_packages: list[str] = []
        self.file = conda_dependencies_file_path

    @classmethod
    def create(
        cls,
        pip_packages: list[str] | None = None,
        conda_packages: list[str] | None = None,
        **_: Any,
    ) -> CondaDependencies:
        deps = cls()
        deps.pip_packages = list(pip_packages or [])
        deps.conda_packages = list(conda_packages or [])
        return deps

    def add_pip_package(self, pip_package: str) -> None:
        self.pip_packages.append(pip_package)

    def add_conda_package(self, conda_package: str) -> None:
        self.conda_packages.append(conda_package)

    def add_channel(self, channel: str) -> None:
        pass

    def set_python_version(self, version: str) -> None:
        self.python_version = version


class PythonSection:
    """``env.python``: ``conda_dependencies``, ``user_managed_dependencies``."""

    def __init__(self) -> None:
        self.conda_dependencies = CondaDependencies.__new__(CondaDependencies)
        self.conda_dependencies.__dict__.update(
            conda_packages=[], pip_packages=[], file=None
        )
        self.user_managed_dependencies = False
        self.interpreter_path = "python"


class DockerSection:
    """``env.docker``: ``base_image``, ``enabled``, ``arguments``."""

    def __init__(self) -> None:
        self.base_image: str | None = DEFAULT_CPU_IMAGE
        self.base_dockerfile: str | None = None
        self.enabled = False
        self.arguments: list[str] = []


class Environment:
    """A named environment: kept for its attributes, never built."""

    def __init__(self, name: str = "daskscore") -> None:
        _ignored("Environment")
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.environment_variables: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Environment(name={self.name!r}, ignored)"

    @classmethod
    def get(cls, workspace: Any, name: str, version: str | None = None) -> Environment:
        return cls(name)

    @classmethod
    def from_conda_specification(cls, name: str, file_path: str) -> Environment:
        env = cls(name)
        env.python.conda_dependencies = CondaDependencies(file_path)
        return env

    @classmethod
    def from_pip_requirements(cls, name: str, file_path: str) -> Environment:
        return cls(name)

    def register(self, workspace: Any) -> Environment:
        return self


class DockerConfiguration:
    """``DockerConfiguration(use_docker=True)``: accepted and ignored."""

    def __init__(self, use_docker: bool = False, **kwargs: Any) -> None:
        _ignored("DockerConfiguration")
        self.use_docker = use_docker
        self.options = dict(kwargs)


class RunConfiguration:
    """A v1 run configuration: its ``environment`` and ``target`` are kept."""

    def __init__(
        self, script: str | None = None, conda_dependencies: Any = None, **_: Any
    ) -> None:
        _ignored("RunConfiguration")
        self.script = script
        self.environment = Environment()
        if conda_dependencies is not None:
            self.environment.python.conda_dependencies = conda_dependencies
        self.target = "local"
        self.docker = DockerConfiguration()
        self.node_count = 1


class AmlComputeProvisioningConfiguration:
    """What ``AmlCompute.provisioning_configuration(...)`` gives: its settings."""

    def __init__(self, **settings: Any) -> None:
        self.settings = dict(settings)


class ComputeTarget:
    """A named compute target: the current Dask cluster, whatever the name."""

    def __init__(self, workspace: Any = None, name: str = "local") -> None:
        _ignored("ComputeTarget")
        self.workspace = workspace
        self.name = name
        self.provisioning_state = "Succeeded"

    def __repr__(self) -> str:
        return f"ComputeTarget(name={self.name!r}: the current Dask cluster)"

    @staticmethod
    def create(
        workspace: Any, name: str, provisioning_configuration: Any = None
    ) -> ComputeTarget:
        """A target named ``name`` (nothing is provisioned)."""
        return AmlCompute(workspace, name)

    def wait_for_completion(self, show_output: bool = False, **_: Any) -> None:
        """Returns at once: there is nothing to provision."""

    def get_status(self) -> str:
        return self.provisioning_state

    def delete(self) -> None:
        pass


class AmlCompute(ComputeTarget):
    """An AML compute cluster: the current Dask cluster."""

    @staticmethod
    def provisioning_configuration(
        **settings: Any,
    ) -> AmlComputeProvisioningConfiguration:
        _ignored("AmlCompute.provisioning_configuration")
        return AmlComputeProvisioningConfiguration(**settings)

    @staticmethod
    def supported_vmsizes(workspace: Any, location: str | None = None) -> list:
        return []


class _ComputeTargets(dict):
    """``ws.compute_targets``: any name is the current Dask cluster."""

    def __init__(self, workspace: Any) -> None:
        super().__init__()
        self.workspace = workspace

    def __missing__(self, name: str) -> ComputeTarget:
        target = AmlCompute(self.workspace, name)
        self[name] = target
        return target

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)


def compute_targets(workspace: Any) -> dict[str, ComputeTarget]:
    """What ``ws.compute_targets`` gives (a dict that has every name)."""
    return _ComputeTargets(workspace)
