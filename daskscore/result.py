"""StepRunResult: what ``ParallelRunStep.run()`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorThresholdExceeded

__all__ = ["StepRunResult"]


@dataclass
class StepRunResult:
    """The outcome of one run of a step.

    A job that exceeded a failure threshold is not an exception: its ``status`` is
    ``"Failed"`` and :meth:`raise_for_status` raises on request. Everything that
    was scored is in ``output_dir`` either way.
    """

    status: str
    total_items: int
    succeeded_items: int
    failed_items: int
    mini_batches: int
    failed_mini_batches: int
    output_dir: str
    output_file: str | None = None
    reason: str = ""
    tries: int = 0
    elapsed_seconds: float = 0.0
    resumed_mini_batches: int = 0
    output_format: str = "txt"
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def items_per_second(self) -> float:
        done = self.succeeded_items + self.failed_items
        return done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def log_dir(self) -> str:
        return f"{self.output_dir.rstrip('/')}/logs"

    def raise_for_status(self) -> StepRunResult:
        """Raise :class:`ErrorThresholdExceeded` if the job Failed, else return self."""
        if self.status != "Completed":
            raise ErrorThresholdExceeded(
                self.reason or "the job failed", self.output_dir
            )
        return self

    def to_dask_dataframe(self):
        """The collected output (``append_row`` file), read lazily by dask.

        ``.parquet`` and ``.csv`` files keep their columns; a ``.txt`` file gives
        one string column ``result`` with one row per line.
        """
        import dask.dataframe as dd

        if not self.output_file:
            raise ValueError(
                "this step has no collected output file (output_action="
                "'summary_only' writes none); read the files the script wrote to "
                f"{self.output_dir}/outputs instead"
            )
        so = self.storage_options or None
        import fsspec

        with fsspec.open(self.output_file, "rb", **(so or {})) as f:
            empty = not f.read(1)
        if empty:  # no item was scored: an empty frame, not a parser error
            import pandas as pd

            return dd.from_pandas(pd.DataFrame({"result": []}), npartitions=1)
        if self.output_format == "parquet":
            return dd.read_parquet(self.output_file, storage_options=so)
        if self.output_format == "csv":
            return dd.read_csv(self.output_file, storage_options=so)
        import pandas as pd
        from dask import delayed
        from dask.bytes import read_bytes

        _, blocks = read_bytes(
            self.output_file,
            delimiter=b"\n",
            blocksize="64MiB",
            sample=False,
            storage_options=so,
        )
        meta = pd.DataFrame({"result": pd.Series([], dtype=object)})
        parts = [delayed(_lines_frame)(b) for b in blocks[0]]
        if not parts:
            return dd.from_pandas(meta, npartitions=1)
        return dd.from_delayed(parts, meta=meta, verify_meta=False)


def _lines_frame(data: bytes):
    import pandas as pd

    lines = data.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return pd.DataFrame({"result": pd.Series(lines, dtype=object)})
