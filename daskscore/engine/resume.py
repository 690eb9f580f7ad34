"""What an earlier run of the step left in its output folder, and what to keep.

Running the same step again into the same output resumes: mini-batches with a
committed record are not scored again. The manifest's fingerprint (script,
settings that affect results, arguments, models, inputs) decides "the same";
anything else discards the earlier parts and records. ``rerun_failed`` keeps the
succeeded mini-batches whatever changed and drops the failed ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import JobError
from ..output.store import StateStore
from .records import RecordBook

__all__ = ["ResumeState", "load_state"]


@dataclass
class ResumeState:
    """The records kept from earlier runs, by mini-batch id."""

    records: RecordBook = field(default_factory=lambda: RecordBook(0))
    # started and never recorded: their start marks, by id (JobSpec.interrupted)
    interrupted: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def resumed(self) -> int:
        return len(self.records)


def load_state(
    store: StateStore,
    fingerprint: str,
    n_specs: int,
    *,
    rerun_failed: bool = False,
    step_name: str = "",
    settings: dict[str, Any] | None = None,
    changed_since: Callable[[float], bool] | None = None,
    seen_at: float | None = None,
) -> ResumeState:
    """Resume from committed records when nothing changed.

    With ``rerun_failed`` the records of failed mini-batches are deleted (so
    they are scored again) and the others kept, whatever changed. Otherwise a
    changed fingerprint resets the store and writes a new manifest.

    ``changed_since(t)``: whether an input changed since ``t`` in a way the
    fingerprint does not see (a local file rewritten in place:
    ``step.inputs_changed_since``, a stat per file). A fresh start pays
    nothing: its manifest holds ``inputs_seen_at`` (``seen_at``, when this run
    began to list its inputs: ``ChainedPlan.listed_at``), and only a resume
    asks whether any input changed since the run that began the records.
    """
    manifest = store.read_manifest()
    same = bool(manifest) and manifest.get("fingerprint") == fingerprint
    if same and changed_since is not None and not rerun_failed:
        since = manifest.get("inputs_seen_at")
        same = since is not None and not changed_since(float(since))

    def write_manifest() -> None:
        store.write_manifest(
            {
                "fingerprint": fingerprint,
                "step": step_name,
                "mini_batches": n_specs,
                "created": time.time(),
                "inputs_seen_at": time.time() if seen_at is None else seen_at,
                "settings": settings or {},
            }
        )

    if rerun_failed:
        interrupted = {}
        kept = _keep_succeeded(store, manifest, n_specs, interrupted)
        if not same:
            write_manifest()
        return ResumeState(kept, interrupted)
    book = RecordBook(n_specs)
    if same:
        interrupted = {}
        for index, record in store.iter_records(interrupted=interrupted):
            if index < n_specs:
                book[index] = record
        return ResumeState(book, interrupted)
    store.reset()
    write_manifest()
    return ResumeState(book)


def _keep_succeeded(
    store: StateStore,
    manifest: dict[str, Any] | None,
    n_specs: int,
    interrupted: dict[int, dict[str, Any]],
) -> RecordBook:
    """``rerun_failed``: delete the records of failed mini-batches, keep the rest."""
    if not manifest:
        raise JobError(
            f"--rerun-failed: {store.output_url} holds no earlier run of this step"
        )
    if manifest.get("mini_batches") != n_specs:
        raise JobError(
            f"--rerun-failed: the inputs of {store.output_url} changed "
            f"({manifest.get('mini_batches')} mini-batches then, {n_specs} "
            "now); rerun the whole job instead"
        )
    kept = RecordBook(n_specs)
    failed: set[int] = set()
    for index, record in store.iter_records(interrupted=interrupted):
        if record.get("failed_mini_batch"):
            failed.add(index)
        elif index < n_specs:
            kept[index] = record
    if failed:
        store.drop_records(failed)
    return kept

