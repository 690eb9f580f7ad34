"""The end of a job: its status and root cause, the numbers, the reports, the result.

Plain functions over the records: :func:`job_summary` decides the status (a
threshold breach, ``init()`` failing everywhere, mini-batches never scored) and
computes what ``logs/job_report.json`` holds; :func:`finish` writes the reports
and returns the :class:`~daskscore.StepRunResult`.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from .._protocol import (
    LOGS_DIR,
    JobStatus,
    MiniBatchRecord,
    MiniBatchSpec,
    TryOutcome,
    TryStatus,
)
from ..config import ParallelRunConfig
from ..output.reports import write_reports
from ..output.store import StateStore, write_atomic
from ..result import StepRunResult

__all__ = [
    "early_failure_text",
    "finish",
    "job_summary",
    "lost_with_worker",
    "no_success_warning",
    "scheduler_lost",
]

logger = logging.getLogger("daskscore")


def job_summary(
    records: list[dict[str, Any]],
    n_specs: int,
    reason: str,
    elapsed: float,
) -> dict[str, Any]:
    """Status, root cause and counts of a job from its final records (in id order).

    ``reason`` is why the job was stopped (a breach, a cancel), or empty.
    """
    succeeded = sum(r["succeeded"] for r in records)
    failed = sum(r["failed"] for r in records)
    init_errors = [r for r in records if r.get("status") == TryStatus.INIT_ERROR]
    if records and len(init_errors) == len(records) and not reason:
        reason = f"init() failed on every worker: {init_errors[0]['error']}"
    died = [r for r in records if r.get("status") == TryStatus.WORKER_DIED]
    if records and len(died) == len(records) and not reason:
        reason = (
            "the workers died in every try of every mini-batch: "
            f"{died[0]['error']}"
        )
    status = JobStatus.FAILED if reason else JobStatus.COMPLETED
    not_run = n_specs - len(records)
    if status == JobStatus.COMPLETED and not_run:
        status = JobStatus.FAILED
        reason = f"{not_run} mini-batches were not scored"
    lost = sum(
        1
        for r in records
        for t in r.get("tries", [])
        if t.get("status") == TryStatus.WORKER_DIED
        and r.get("status") != TryStatus.WORKER_DIED
    )
    return {
        "status": str(status),
        "reason": reason,
        "total_items": succeeded + failed,
        "succeeded_items": succeeded,
        "failed_items": failed,
        "mini_batches": n_specs,
        "processed_mini_batches": len(records),
        "failed_mini_batches": sum(1 for r in records if r.get("failed_mini_batch")),
        "tries": sum(len(r.get("tries", [])) for r in records),
        "elapsed_seconds": round(elapsed, 3),
        "items_per_second": round((succeeded + failed) / elapsed, 3)
        if elapsed > 0
        else 0.0,
        "lost_tries": lost,
        "first_errors": [
            f"mini-batch {r['index']} ({r['input']}): {r['status']}: {r['error']}"
            for r in records
            if r.get("failed_mini_batch")
        ][:5],
    }


def finish(
    store: StateStore,
    cfg: ParallelRunConfig,
    records: list[dict[str, Any]],
    *,
    n_specs: int,
    reason: str,
    elapsed: float,
    resumed: int,
    output_file: str | None,
    step_name: str,
    job_id: str,
    progress_lines: list[str],
) -> tuple[dict[str, Any], StepRunResult]:
    """Write the reports of a finished job; return its summary and result."""
    counts = job_summary(records, n_specs, reason, elapsed)
    warnings = _job_warnings(records, store)
    for w in warnings[:5]:
        logger.warning("%s", w)
    summary = {
        "status": counts["status"],
        "step": step_name,
        "job_id": job_id,
        **{
            k: v
            for k, v in counts.items()
            if k not in ("status", "lost_tries", "first_errors")
        },
        "resumed_mini_batches": resumed,
        "lost_tries": counts["lost_tries"],
        "output_dir": store.output_url,
        "output_file": output_file,
        "output_action": str(cfg.output_action),
        "warnings": warnings[:20],
        "first_errors": counts["first_errors"],
    }
    write_reports(store.fs, store.path(LOGS_DIR), summary, records, progress_lines)
    result = StepRunResult(
        status=summary["status"],
        total_items=summary["total_items"],
        succeeded_items=summary["succeeded_items"],
        failed_items=summary["failed_items"],
        mini_batches=n_specs,
        failed_mini_batches=summary["failed_mini_batches"],
        output_dir=store.output_url,
        output_file=output_file,
        reason=summary["reason"],
        tries=summary["tries"],
        elapsed_seconds=elapsed,
        resumed_mini_batches=resumed,
        output_format=cfg.output_format,
        # resolved like output_file: the user's options may only make sense
        # with the URL form they gave (a path-style URL with an account key)
        storage_options=store.storage_options,
    )
    return summary, result


def _job_warnings(records: list[dict[str, Any]], store: StateStore) -> list[str]:
    """Why no item succeeded (if none did), then the records' and the assembly's."""
    why = no_success_warning(records)
    warnings = [why] if why else []
    warnings += sorted({r["warning"] for r in records if r.get("warning")})
    return warnings + store.assembly_warnings


def no_success_warning(records: list[dict[str, Any]]) -> str:
    """One line saying why no item succeeded, when none did; else "".

    A job whose every item failed may still be Completed (``error_threshold=-1``
    ignores failures): this line names the most common error, such as a
    ``run()`` that returns a generator.
    """
    if not records or any(r.get("succeeded") for r in records):
        return ""
    errors = Counter(r["error"] for r in records if r.get("error"))
    if not errors:
        return ""
    error, n = errors.most_common(1)[0]
    share = f"all {n}" if n == len(records) else f"{n} of {len(records)}"
    return f"no item succeeded: {share} mini-batches failed with: {error}"


def lost_with_worker(spec: MiniBatchSpec, exc: BaseException) -> dict[str, Any]:
    """The record of a mini-batch whose worker died every time Dask tried it."""
    n = spec.items or 1
    error = (
        f"the worker scoring this mini-batch died repeatedly ({exc}); see the "
        "worker logs"
    )
    attempt = TryOutcome(
        try_no=1, items=n, failed=n, status=TryStatus.WORKER_DIED, error=error
    )
    return MiniBatchRecord.all_failed(
        spec, TryStatus.WORKER_DIED, error, [attempt]
    ).to_dict()


def scheduler_lost(address: str, not_scored: int) -> str:
    """The root cause of a job whose Dask scheduler went away mid-job."""
    return (
        f"lost the Dask scheduler at {address} while {not_scored} mini-batches "
        "were still to be scored; the mini-batches committed so far are kept: "
        "once the scheduler is back, run the same command again to resume"
    )


def early_failure_text(step_name: str, message: str, details: str) -> str:
    """``logs/job_result.txt`` of a job that failed before any data was processed."""
    return (
        f"Status: Failed\nStep: {step_name}\nRoot cause: {message}\n"
        "No data was processed.\n" + (f"\n{details}\n" if details else "")
    )


def write_early_failure(
    store: StateStore, step_name: str, message: str, details: str
) -> None:
    """Write ``logs/job_result.txt`` for a job that never started scoring."""
    write_atomic(
        store.fs,
        f"{store.path(LOGS_DIR)}/job_result.txt",
        early_failure_text(step_name, message, details).encode(),
    )
