"""``azureml_user.parallel_run`` (v1): ``EntryScript``, daskscore's own.

On a cluster and off it (a notebook) alike; see
:class:`daskscore.entry_script.EntryScript`.
"""

from __future__ import annotations

from ..entry_script import EntryScript

__all__ = ["EntryScript"]
