"""``azureml.core.Model`` (v1) over daskscore's model registry.

A thin layer: the registry (:class:`daskscore.registry.model.Model`) does the
work; this class takes the v1 signatures (``Model(ws, name=..., version=...,
tags=...)``, ``Model.list(ws, name=None, tags=[[key, value]] or [key],
latest=False)``, ``model_framework=``, ``exist_ok=``).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import NotRegisteredError
from ..registry.model import Model as _RegistryModel
from ..registry.workspace import Workspace
from ._hook import V1Class, v1_attribute

__all__ = ["Model"]


class Model(_RegistryModel, metaclass=V1Class):
    """A registered model, with the v1 constructor and class methods.

    ``Model(ws, name="sales", version=3)``, ``Model(ws, "sales")`` (the latest),
    ``Model(ws, name="sales", tags=[["store", "1001"]])`` (the latest with that
    tag), ``Model(ws, id="sales:3")``. ``.name``, ``.version``, ``.tags``,
    ``.download(target_dir=".", exist_ok=False)`` as in v1.
    """

    def __init__(self, workspace: Workspace, name: str | None = None,
                 id: str | None = None, tags: Any = None, properties: Any = None,
                 version: int | str | None = None, run_id: str | None = None,
                 **kwargs: Any) -> None:
        if id is not None and name is None:
            name, _, found = str(id).partition(":")
            version = version if version is not None else (found or None)
        if name is None:
            raise NotRegisteredError("model", "<no name>", workspace=workspace.url,
                                     hint="give Model(ws, name=...) or id='name:3'")
        if tags or properties:
            found_models = [m for m in _RegistryModel.list(
                workspace, name, tags=tags, properties=properties)
                if version is None or m.version == int(version)]
            if not found_models:
                raise NotRegisteredError(
                    "model", name, version=version, workspace=workspace.url,
                    known=[m.id for m in _RegistryModel.list(workspace, name)],
                    hint=f"no version has tags={tags!r} properties={properties!r}")
            self._init(workspace, found_models[-1]._record())
            return
        super().__init__(workspace, name, version)

    v1_name = "azureml.core.Model"

    def __getattr__(self, name: str) -> Any:
        raise v1_attribute(self.v1_name, name)

    @staticmethod
    def list(workspace: Workspace, name: str | None = None, tags: Any = None,
             properties: Any = None, run_id: str | None = None,
             latest: bool = False, **kwargs: Any) -> list[Model]:
        """The registered models, filtered as in v1 (see the registry's list)."""
        return [Model._from_record(workspace, m._record()) for m in
                _RegistryModel.list(workspace, name, latest=latest, tags=tags,
                                    properties=properties)]

    @classmethod
    def register(cls, workspace: Workspace, model_path: str | os.PathLike,
                 model_name: str, tags: Any = None, properties: Any = None,
                 description: str | None = None, model_framework: str | None = None,
                 model_framework_version: str | None = None,
                 **kwargs: Any) -> Model:
        """Register a file or folder (``model_framework`` and the other v1
        arguments are kept as properties or accepted)."""
        props = dict(properties or {})
        if model_framework:
            props.setdefault("model_framework", str(model_framework))
        if model_framework_version:
            props.setdefault("model_framework_version", str(model_framework_version))
        model = _RegistryModel.register(workspace, model_path, model_name,
                                        tags=dict(tags or {}), properties=props,
                                        description=description)
        return cls._from_record(workspace, model._record())

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None,
                       _workspace: Workspace | None = None) -> str:
        """The local path of a model given to the step: a file for a single-file
        model, its folder otherwise (see the registry's ``get_model_path``)."""
        return _RegistryModel.get_model_path(model_name, version, _workspace)
