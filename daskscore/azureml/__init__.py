"""Azure ML SDK v1 names for daskscore: entry scripts and notebooks unchanged.

``import daskscore.azureml; daskscore.azureml.install()`` makes ``azureml.core``
(``Model``, ``Run``, ``Workspace``, ``Dataset``, ``Datastore``, ``Experiment``),
``azureml.core.model``, ``azureml.core.run``, ``azureml.core.dataset`` and
``azureml_user.parallel_run`` (``EntryScript``) resolve to daskscore, when the
real SDK is not importable (or with ``force=True``). The runner process installs
the hook itself before it imports the entry script. See ``_hook`` for how, and
``docs/migrating-from-azureml.md`` for every v1 name.
"""

from ._hook import MODULES, NotProvidedError, install, installed, real_sdk_available

__all__ = ["MODULES", "NotProvidedError", "install", "installed", "real_sdk_available"]
