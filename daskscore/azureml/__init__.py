"""Azure ML SDK v1 names: entry scripts unchanged, notebooks with one line.

``import daskscore.azureml; daskscore.azureml.install()`` makes ``azureml.core``
(``Model``, ``Run``, ``Workspace``, ``Dataset``, ``Datastore``, ``Experiment``, ...),
``azureml.pipeline.core``/``.steps``, ``azureml.data`` and
``azureml_user.parallel_run`` (``EntryScript``) resolve to daskscore, when the
real SDK is not importable (or with ``force=True``). The runner process installs
the hook itself before it imports the entry script. See ``_hook`` for how, and
``docs/migrating-from-azureml.md`` for every v1 name.
"""

from ._hook import (
    MODULES,
    V1_MODULES,
    ModuleNotProvidedError,
    NotProvidedError,
    V1Finder,
    install,
    installed,
    provide_mltable,
    real_sdk_available,
    uninstall,
)

__all__ = [
    "MODULES",
    "V1_MODULES",
    "ModuleNotProvidedError",
    "NotProvidedError",
    "V1Finder",
    "install",
    "installed",
    "provide_mltable",
    "real_sdk_available",
    "uninstall",
]
