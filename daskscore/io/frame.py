"""A dask DataFrame as input: each partition is one mini-batch.

The client computes each partition on the cluster and hands it to the task that
scores it, so the runner gets the frame itself instead of a description.
"""

from __future__ import annotations

from typing import Any

from .._protocol import MiniBatchSpec
from ._common import fingerprint


def plan_frame(frame: Any) -> tuple[list[MiniBatchSpec], str]:
    """One mini-batch per partition, and a fingerprint of the frame's graph."""
    specs = [
        MiniBatchSpec(index=i, kind="frame", start=i, stop=i + 1)
        for i in range(frame.npartitions)
    ]
    return specs, fingerprint([], "frame", frame._name)
