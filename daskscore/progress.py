"""Progress reporting: a small callback interface with a no-op default.

``ParallelRunStep.run(progress=...)`` calls ``start`` once (the mini-batches an
earlier run committed already counted: :attr:`JobProgress.resumed_mini_batches`),
``update`` within about a second of every committed mini-batch (from a thread of
the job's, one call at a time) (and, while ``init()`` is still running on some workers,
about every second with :attr:`JobProgress.init_workers` set), and ``finish``
once. ``TextProgress`` draws a live bar (on a
terminal) or prints a line every few seconds (in a log file), with mini-batches
and items done, failures and the ETA.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from ._protocol import DASHBOARD_PATH

__all__ = [
    "JobProgress",
    "NoProgress",
    "ProgressCallback",
    "TextProgress",
    "dashboard_page_link",
]


@dataclass
class JobProgress:
    """A snapshot of a running job."""

    total_mini_batches: int
    done_mini_batches: int = 0
    failed_mini_batches: int = 0
    total_items: int | None = None  # None when unknown before reading (CSV)
    succeeded_items: int = 0
    failed_items: int = 0
    started: float = 0.0
    # workers whose init() is still running, and the longest it has run (s)
    init_workers: int = 0
    init_seconds: float = 0.0
    # committed by an earlier run of the step (counted in the totals above from
    # the start, left out of the rates)
    resumed_mini_batches: int = 0
    resumed_items: int = 0

    @property
    def elapsed_seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def items_per_second(self) -> float:
        elapsed = self.elapsed_seconds
        done = self.succeeded_items + self.failed_items - self.resumed_items
        return max(0, done) / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        done = self.done_mini_batches - self.resumed_mini_batches
        if done <= 0:
            return None
        rate = done / max(self.elapsed_seconds, 1e-9)
        return (self.total_mini_batches - self.done_mini_batches) / rate

    def line(self) -> str:
        items = self.succeeded_items + self.failed_items
        total = f"/{self.total_items}" if self.total_items is not None else ""
        eta = self.eta_seconds
        eta_text = f"ETA {eta:.0f}s" if eta is not None else "ETA ?"
        return (
            f"Processed {self.done_mini_batches} of {self.total_mini_batches} "
            f"mini-batches{self.resumed_text()}, {items}{total} items "
            f"({self.failed_items} failed items, "
            f"{self.failed_mini_batches} failed mini-batches), "
            f"{self.items_per_second:.1f} items/s, {eta_text}{self.init_text()}"
        )

    def resumed_text(self) -> str:
        """``" (20 resumed)"``: committed by an earlier run; or ""."""
        n = self.resumed_mini_batches
        return f" ({n} resumed)" if n else ""

    def init_text(self) -> str:
        """``"; init() still running on 2 workers (for 35 s)"``, or ""."""
        if not self.init_workers:
            return ""
        n = self.init_workers
        return (
            f"; init() still running on {n} worker{'s' if n != 1 else ''} "
            f"(for {self.init_seconds:.0f} s)"
        )


class ProgressCallback:
    """Receives progress of a job; every hook is a no-op by default."""

    def start(self, progress: JobProgress, dashboard_link: str | None) -> None:
        """The job's mini-batches are planned and submitted."""

    def update(self, progress: JobProgress) -> None:
        """One more mini-batch is done."""

    def finish(self, progress: JobProgress, result: Any) -> None:
        """The job ended (``result`` is the StepRunResult)."""


NoProgress = ProgressCallback


class TextProgress(ProgressCallback):
    """A live progress bar on a terminal, periodic lines elsewhere."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self._bar = None
        self._last = 0.0

    def start(self, progress: JobProgress, dashboard_link: str | None) -> None:
        if dashboard_link:
            print(
                f"Dask dashboard: {dashboard_link}  (this job: "
                f"{dashboard_page_link(dashboard_link)})",
                file=self.stream,
                flush=True,
            )
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=progress.total_mini_batches,
                initial=progress.done_mini_batches,
                unit="mini-batch",
                file=self.stream,
                dynamic_ncols=True,
            )
            if progress.resumed_mini_batches:
                self._bar.set_description(
                    f"{progress.resumed_mini_batches} resumed", refresh=True
                )
        else:
            print(progress.line(), file=self.stream, flush=True)

    def update(self, progress: JobProgress) -> None:
        if self._bar is not None:
            self._bar.n = progress.done_mini_batches
            postfix = {
                "items": progress.succeeded_items + progress.failed_items,
                "failed": progress.failed_items,
            }
            if progress.init_workers:
                postfix["init"] = (
                    f"running on {progress.init_workers} "
                    f"({progress.init_seconds:.0f} s)"
                )
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            print(progress.line(), file=self.stream, flush=True)

    def finish(self, progress: JobProgress, result: Any) -> None:
        if self._bar is not None:
            self._bar.n = progress.done_mini_batches
            self._bar.close()
            self._bar = None
        else:
            print(progress.line(), file=self.stream, flush=True)


def dashboard_page_link(dashboard_link: str | None) -> str | None:
    """The daskscore page next to the Dask dashboard's ``/status`` page."""
    if not dashboard_link:
        return None
    base = dashboard_link.rsplit("/status", 1)[0].rstrip("/")
    return f"{base}{DASHBOARD_PATH}"
