"""What an earlier run of the step left in its output folder, and what to keep.

Running the same step again into the same output resumes: mini-batches with a
committed record are not scored again. The manifest's fingerprint (script,
settings that affect results, arguments, models, inputs) decides "the same";
anything else discards the earlier parts and records. ``rerun_failed`` keeps the
succeeded mini-batches whatever changed and drops the failed ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .._protocol import record_name
from ..errors import JobError
from ..output.store import StateStore

__all__ = ["ResumeState", "load_state"]


@dataclass
class ResumeState:
    """The records kept from earlier runs, by mini-batch id."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)

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
) -> ResumeState:
    """Resume from committed records when nothing changed.

    With ``rerun_failed`` the records of failed mini-batches are deleted (so
    they are scored again) and the others kept, whatever changed. Otherwise a
    changed fingerprint resets the store and writes a new manifest.
    """
    manifest = store.read_manifest()
    same = bool(manifest) and manifest.get("fingerprint") == fingerprint

    def write_manifest() -> None:
        store.write_manifest(
            {
                "fingerprint": fingerprint,
                "step": step_name,
                "mini_batches": n_specs,
                "created": time.time(),
                "settings": settings or {},
            }
        )

    if rerun_failed:
        if not manifest:
            raise JobError(
                f"--rerun-failed: {store.output_url} holds no earlier run of "
                "this step"
            )
        if manifest.get("mini_batches") != n_specs:
            raise JobError(
                f"--rerun-failed: the inputs of {store.output_url} changed "
                f"({manifest.get('mini_batches')} mini-batches then, {n_specs} "
                "now); rerun the whole job instead"
            )
        kept = {}
        for index, record in store.load_records().items():
            if record.get("failed_mini_batch"):
                store.fs.rm_file(f"{store.records}/{record_name(index)}")
            elif index < n_specs:
                kept[index] = record
        if not same:
            write_manifest()
        return ResumeState(kept)
    if same:
        return ResumeState(
            {i: r for i, r in store.load_records().items() if i < n_specs}
        )
    store.reset()
    write_manifest()
    return ResumeState()
