"""The ``daskscore`` command line (and ``dask score``): thin front ends.

- :mod:`.main`: ``run``, ``submit``, ``status``, ``wait``, ``cancel``;
- :mod:`.runs`: ``runs list|show``, a workspace's run history.
"""

from .main import dask_cli, main, score_command

__all__ = ["dask_cli", "main", "score_command"]
