"""A small ``mltable`` module for scripts that ``import mltable`` without the package.

Installing the real ``mltable`` beside Dask breaks Dask (it pulls in
``azureml-dataprep``, which pins ``cloudpickle<3``; dask and distributed need
``cloudpickle>=3``). So daskscore's runner processes and the command jobs it starts
make ``import mltable`` give this module when the real one is not importable.
``mltable.load(uri).to_pandas_dataframe()`` reads the table with daskscore's own
MLTable reader (:mod:`daskscore.v2jobs.mltable`).
"""

from __future__ import annotations

from typing import Any

from .mltable import MLTable, load_mltable

__all__ = ["MLTable", "load"]


def load(uri: str, storage_options: dict[str, Any] | None = None) -> MLTable:
    """The MLTable in folder ``uri`` (local path or URL); ``.to_pandas_dataframe()``."""
    return load_mltable(uri, storage_options)
