"""The import hook: Azure ML v1 module names resolved to daskscore modules.

:func:`install` puts a :class:`V1Finder` first on ``sys.meta_path``. It answers
for the names of :data:`MODULES` (a v1 module name -> the daskscore module that
backs it) and their parent packages (``azureml``, ``azureml_user``), and only
when the real Azure ML SDK is not importable (``azureml.core`` found by the
regular path finders), unless ``force=True``. Each v1 name is an alias module
whose attributes are those of its daskscore module; a name that daskscore does
not provide fails on import or attribute access with one line
(:class:`NotProvidedError`). A v1 module that is not in the table and not
installed for real (``import azureml.train.estimator``) fails the same way.

This module imports nothing of daskscore's at its top: the runner process
installs the hook before it imports the user's script, and it must stay light
(the daskscore module behind a v1 name is imported when the script imports it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import types
from typing import Any

__all__ = ["MODULES", "V1_MODULES", "ModuleNotProvidedError", "NotProvidedError",
           "V1Class", "V1Finder", "install", "installed", "not_provided",
           "provide_mltable", "real_sdk_available", "uninstall", "v1_attribute"]

logger = logging.getLogger("daskscore.azureml")

# v1 module name -> the daskscore module behind it. Add a row (and the module)
# to provide another v1 module.
MODULES: dict[str, str] = {
    "azureml.core": "daskscore.azureml.core",
    "azureml.core.model": "daskscore.azureml.core",
    "azureml.core.run": "daskscore.azureml.core",
    "azureml.core.dataset": "daskscore.azureml.core",
    "azureml.core.workspace": "daskscore.azureml.core",
    "azureml.core.datastore": "daskscore.azureml.core",
    "azureml.core.experiment": "daskscore.azureml.core",
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
    "azureml_user.parallel_run": "daskscore.azureml.parallel_run",
}
V1_MODULES = MODULES  # the name notebooks' helpers know it by
# the top-level packages the hook answers for
ROOTS = ("azureml", "azureml_user")
DOCS = "docs/migrating-from-azureml.md"


class NotProvidedError(ImportError):
    """A v1 module or name daskscore does not provide (one line, naming it)."""

    def __init__(self, name: str, what: str = "name") -> None:
        super().__init__(
            f"{name}: daskscore does not provide this Azure ML v1 {what}; see "
            f"{DOCS} for what is provided and what to use instead",
            name=name,
        )


class ModuleNotProvidedError(NotProvidedError, ModuleNotFoundError):
    """A v1 module that daskscore does not provide."""


def not_provided(name: str) -> NotProvidedError:
    return NotProvidedError(name)


class V1Class(type):
    """Metaclass of the v1 classes daskscore provides (``Model``, ``Run``): a
    class attribute or method they lack fails with one line naming it, as does
    an instance's (``__getattr__`` below, via :func:`v1_attribute`)."""

    v1_name = ""

    def __getattr__(cls, name: str) -> Any:
        raise v1_attribute(cls.v1_name or cls.__name__, name)


def v1_attribute(owner: str, name: str) -> Exception:
    """What looking up ``owner.name`` raises when daskscore lacks it."""
    if name.startswith("_"):
        return AttributeError(name)
    return not_provided(f"{owner}.{name}")


def _is_root_or_below(fullname: str) -> bool:
    return any(fullname == r or fullname.startswith(r + ".") for r in ROOTS)


def _packages() -> set[str]:
    """Every v1 name that has a v1 name below it (a package)."""
    out = set(ROOTS)
    for name in MODULES:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


class _Alias(types.ModuleType):
    """A v1 module: its attributes are those of the daskscore module behind it."""

    _target: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if f"{self.__name__}.{name}" in MODULES:  # a v1 submodule, not imported yet
            return importlib.import_module(f"{self.__name__}.{name}")
        if self._target is None:
            raise not_provided(f"{self.__name__}.{name}")
        module = importlib.import_module(self._target)
        try:
            return getattr(module, name)
        except AttributeError:
            if name.startswith("_"):
                raise
            raise not_provided(f"{self.__name__}.{name}") from None

    def __dir__(self) -> list[str]:
        if self._target is None:
            return sorted(self.__dict__)
        module = importlib.import_module(self._target)
        return sorted(set(getattr(module, "__all__", dir(module))))


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str | None) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _Alias(spec.name)
        module._target = self.target
        module.__daskscore__ = self.target
        if self.target is not None:
            # the daskscore module loads with its v1 name: an import error shows
            target = importlib.import_module(self.target)
            module.__doc__ = target.__doc__
            if hasattr(target, "__all__"):
                module.__all__ = list(target.__all__)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _real_spec(fullname: str) -> importlib.machinery.ModuleSpec | None:
    """``fullname`` as the real path finders see it (our finder left out)."""
    parts = fullname.split(".")
    path = None
    spec = None
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        path = spec.submodule_search_locations
        if path is None and i < len(parts):
            return None
    return spec


def real_sdk_available() -> bool:
    """Whether the real Azure ML SDK (``azureml.core``) is importable.

    Asked of the path finders (``sys.path``), never of this hook.
    """
    return _real_spec("azureml.core") is not None


class V1Finder(importlib.abc.MetaPathFinder):
    """Finds the v1 names of :data:`MODULES` (see the module's doc)."""

    def find_spec(self, fullname: str, path: Any = None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not _is_root_or_below(fullname):
            return None
        packages = _packages()
        if fullname in MODULES or fullname in packages:
            search = [] if fullname in packages else None
            if fullname in ROOTS:
                # real namespace portions (e.g. azureml-mlflow) stay importable
                real = _real_spec(fullname)
                search = list(real.submodule_search_locations or []) if real else []
            spec = importlib.machinery.ModuleSpec(
                fullname, _AliasLoader(MODULES.get(fullname)),
                is_package=search is not None,
            )
            if search is not None:
                spec.submodule_search_locations = search
            return spec
        if _real_spec(fullname) is not None:
            return None  # installed for real beside us: the path finders load it
        raise ModuleNotProvidedError(fullname, "module")


_FINDER = V1Finder()


def installed() -> bool:
    """Whether the hook is on ``sys.meta_path``."""
    return any(isinstance(f, V1Finder) for f in sys.meta_path)


def install(force: bool = False) -> bool:
    """Make ``azureml.core``, ``azureml_user.parallel_run``, ... resolve to daskscore.

    Does nothing (one info line) when the real Azure ML SDK is importable (it
    wins), unless ``force=True``, which also drops the real SDK's modules already
    imported. Calling it again does nothing. Returns whether the hook is installed.
    """
    if installed():
        return True
    if not force and real_sdk_available():
        logger.info(
            "daskscore.azureml.install(): the Azure ML SDK is installed, so "
            "azureml imports stay the real SDK's (force=True to use daskscore's)"
        )
        return False
    if force:
        for name in [n for n in sys.modules if _is_root_or_below(n)]:
            del sys.modules[name]
    sys.meta_path.insert(0, _FINDER)
    _show_info_lines()
    logger.info("daskscore.azureml.install(): azureml imports now resolve to "
                "daskscore (see %s)", DOCS)
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
        if _is_root_or_below(name) and isinstance(
            getattr(sys.modules[name], "__loader__", None), _AliasLoader
        ):
            del sys.modules[name]


# -- ``import mltable`` (Azure ML v2 scripts) without the package: unlike the v1
# names, the real package wins whenever it is installed, so this finder goes last
# on ``sys.meta_path`` and answers only when no other finder has ``mltable``.
class _MltableFallback(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on ``sys.meta_path``: found only when no real ``mltable`` is."""

    def find_spec(self, fullname: str, path: Any = None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "mltable":
            return None
        return importlib.machinery.ModuleSpec("mltable", self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a plain module named mltable

    def exec_module(self, module: types.ModuleType) -> None:
        ours = importlib.import_module("daskscore.v2jobs.mltable_module")
        module.__dict__.update({k: v for k, v in vars(ours).items()
                                if not k.startswith("__")})
        module.__doc__ = ours.__doc__


def provide_mltable() -> None:
    """Let a script ``import mltable`` when the real package is not installed."""
    if not any(isinstance(f, _MltableFallback) for f in sys.meta_path):
        sys.meta_path.append(_MltableFallback())
