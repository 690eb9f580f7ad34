"""The hand-written Dask baseline: the MLP cached in a module global per worker.

``score_partition(frame, model_path)`` is what a Dask user writes without
daskscore: ``ddf.map_partitions(score_partition, model_path, meta=...)``. The
model loads on the first partition a worker process scores, then stays.
"""

from __future__ import annotations

import score_table

_MODEL = {}


def score_partition(frame, model_path: str):
    model = _MODEL.get(model_path)
    if model is None:
        model = _MODEL[model_path] = score_table.load(model_path)
    return score_table.score(model, frame)
