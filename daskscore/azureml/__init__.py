"""Azure ML SDK v1 names, backed by daskscore: ``daskscore.azureml.install()``.

One added line at the top of a v1 notebook or pipeline script::

    import daskscore.azureml; daskscore.azureml.install()

puts an import hook on ``sys.meta_path`` so that ``import azureml.core``,
``from azureml.pipeline.steps import ParallelRunStep`` and the other names of
:data:`V1_MODULES` resolve to daskscore modules. Each v1 module is a small proxy
module whose public names are those of the daskscore module behind it; a name
daskscore does not provide fails on import or attribute access with one line
(:class:`NotProvidedError`) naming it, and so does a v1 module not in the table.

When the real SDK (``azureml-core``) is importable, ``install()`` does nothing
and the real SDK is used; ``install(force=True)`` puts daskscore first anyway.
This module imports nothing of daskscore when it loads: the daskscore modules
behind the v1 names are imported on first use.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types
from typing import Any

__all__ = ["V1_MODULES", "NotProvidedError", "install", "installed", "uninstall"]

logger = logging.getLogger("daskscore.azureml")

DOCS = "docs/migrating-from-azureml.md"

# v1 module name -> the daskscore module that backs it. A name's parent packages
# (``azureml``, ``azureml.pipeline``) exist as empty packages when not listed.
V1_MODULES = {
    # the azureml.core rows of the notebook flows (re-exported by core.py once the
    # entry-script names land; see the report of branch v1b)
    "azureml.core": "daskscore.azureml._notebook",
    "azureml.core.workspace": "daskscore.azureml._notebook",
    "azureml.core.datastore": "daskscore.azureml._notebook",
    "azureml.core.experiment": "daskscore.azureml._notebook",
    "azureml.core.compute": "daskscore.azureml.compute",
    "azureml.core.compute_target": "daskscore.azureml.compute",
    "azureml.core.environment": "daskscore.azureml.compute",
    "azureml.core.runconfig": "daskscore.azureml.compute",
    "azureml.core.conda_dependencies": "daskscore.azureml.compute",
    "azureml.pipeline.core": "daskscore.azureml.pipeline",
    "azureml.pipeline.core.graph": "daskscore.azureml.pipeline",
    "azureml.pipeline.steps": "daskscore.azureml.pipeline",
    "azureml.data": "daskscore.azureml.data",
    "azureml.data.dataset_factory": "daskscore.azureml.data",
    "azureml.data.output_dataset_config": "daskscore.azureml.data",
    "azureml.data.data_reference": "daskscore.azureml.data",
    "azureml.data.datapath": "daskscore.azureml.data",
    "azureml.data.dataset_consumption_config": "daskscore.azureml.data",
}

_PREFIXES = ("azureml", "azureml_user")


class NotProvidedError(ImportError):
    """A v1 module or name that daskscore does not provide (one line, no traceback
    deep inside daskscore)."""

    def __init__(self, name: str, what: str = "name") -> None:
        super().__init__(
            f"{name}: daskscore does not provide this Azure ML v1 {what}; see "
            f"{DOCS} for what is provided and what to use instead",
            name=name,
        )


class ModuleNotProvidedError(NotProvidedError, ModuleNotFoundError):
    """A v1 module that daskscore does not provide."""


def _packages() -> set[str]:
    """Every v1 module name of the table and their parent packages."""
    names = set()
    for name in V1_MODULES:
        parts = name.split(".")
        names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return names


def _exports(target: types.ModuleType) -> list[str]:
    names = getattr(target, "__all__", None)
    if names is None:
        names = [n for n in vars(target) if not n.startswith("_")]
    return list(names)


class _Loader(importlib.abc.Loader):
    """Makes the proxy module of one v1 name."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        # a package: its v1 submodules import too, and so do those of other
        # installed azureml distributions (azureml-dataprep, ...)
        parts = spec.name.split(".")
        module.__path__ = [
            os.path.join(p, *parts)
            for p in sys.path
            if isinstance(p, str) and os.path.isdir(os.path.join(p or ".", *parts))
        ]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        name = module.__name__
        backing = V1_MODULES.get(name)
        target = importlib.import_module(backing) if backing else None
        module.__doc__ = (
            f"Azure ML v1 {name}, backed by {backing}."
            if backing
            else f"Azure ML v1 package {name}."
        )
        module.__daskscore__ = backing
        exported = set(_exports(target)) if target is not None else set()
        for attr in exported:
            setattr(module, attr, getattr(target, attr))
        module.__all__ = sorted(exported)

        def __getattr__(attr: str) -> Any:
            if attr.startswith("__"):
                raise AttributeError(f"module {name!r} has no attribute {attr!r}")
            raise NotProvidedError(f"{name}.{attr}")

        module.__getattr__ = __getattr__


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the v1 names of :data:`V1_MODULES`; refuses other ``azureml.*``."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] not in _PREFIXES:
            return None
        if fullname in V1_MODULES or fullname in _packages():
            return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)
        if _found_elsewhere(fullname, path, target):
            return None  # another azureml package installed (azureml-dataprep, ...)
        raise ModuleNotProvidedError(fullname, "module")


def _found_elsewhere(fullname: str, path: Any, target: Any) -> bool:
    """Whether another finder has ``fullname`` (an installed ``azureml.*``
    distribution that daskscore does not stand in for)."""
    for finder in sys.meta_path:
        if finder is _FINDER or not hasattr(finder, "find_spec"):
            continue
        try:
            if finder.find_spec(fullname, path, target) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


_FINDER = _Finder()


def installed() -> bool:
    """Whether the import hook is on ``sys.meta_path``."""
    return any(f is _FINDER for f in sys.meta_path)


def _real_sdk() -> bool:
    """Whether the real Azure ML SDK (``azureml.core``) is importable."""
    try:
        return importlib.util.find_spec("azureml.core") is not None
    except (ImportError, ValueError):
        return False


def install(force: bool = False) -> bool:
    """Make ``azureml...`` imports resolve to daskscore; returns whether it did.

    Does nothing (returns False, one info line) when the real Azure ML SDK is
    importable, unless ``force=True``, which puts daskscore's names first. Calling
    it again is harmless.
    """
    if installed():
        return True
    if not force and _real_sdk():
        logger.info(
            "daskscore.azureml.install(): the Azure ML SDK is installed, so "
            "azureml imports stay the real SDK's (force=True to use "
            "daskscore's)"
        )
        return False
    sys.meta_path.insert(0, _FINDER)
    _show_info_lines()
    logger.info(
        "daskscore.azureml.install(): azureml imports now resolve to "
        "daskscore (see %s)",
        DOCS,
    )
    return True


def _show_info_lines() -> None:
    """Print this package's info lines (what is ignored, where it runs) to stderr,
    as a notebook shows them, unless logging is configured already."""
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def uninstall() -> None:
    """Remove the hook and forget the v1 modules it made."""
    sys.meta_path[:] = [f for f in sys.meta_path if f is not _FINDER]
    for name in list(sys.modules):
        module = sys.modules[name]
        if name.split(".", 1)[0] in _PREFIXES and isinstance(
            getattr(module, "__loader__", None), _Loader
        ):
            del sys.modules[name]
