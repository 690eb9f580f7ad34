"""The end of a job: its status and root cause, the numbers, the reports, the result.

Plain functions over the records: :func:`job_summary` decides the status (a
threshold breach, ``init()`` failing everywhere, mini-batches never scored) and
computes what ``logs/job_report.json`` holds; :func:`finish` writes the reports
and returns the :class:`~daskscore.StepRunResult`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
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
    records: Iterable[dict[str, Any]],
    n_specs: int,
    reason: str,
    elapsed: float,
) -> dict[str, Any]:
    """Status, root cause and counts of a job from its final records (in id order).

    ``reason`` is why the job was stopped (a breach, a cancel), or empty. The
    records are read once, one at a time (they may be streamed from disk).
    """
    c = _count_records(records)
    n = c["records"]
    if n and c["init_errors"] == n and not reason:
        reason = f"init() failed on every worker: {c['init_error']}"
    if n and c["died"] == n and not reason:
        reason = (
            "the workers died in every try of every mini-batch: "
            f"{c['died_error']}"
        )
    status = JobStatus.FAILED if reason else JobStatus.COMPLETED
    not_run = n_specs - n
    if status == JobStatus.COMPLETED and not_run:
        status = JobStatus.FAILED
        reason = f"{not_run} mini-batches were not scored"
    succeeded, failed = c["succeeded"], c["failed"]
    return {
        "status": str(status),
        "reason": reason,
        "total_items": succeeded + failed,
        "succeeded_items": succeeded,
        "failed_items": failed,
        "mini_batches": n_specs,
        "processed_mini_batches": n,
        "failed_mini_batches": c["failed_mini_batches"],
        "tries": c["tries"],
        "elapsed_seconds": round(elapsed, 3),
        "items_per_second": round((succeeded + failed) / elapsed, 3)
        if elapsed > 0
        else 0.0,
        "lost_tries": c["lost"],
        "first_errors": c["first_errors"],
    }


def _count_records(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What :func:`job_summary` needs of the records, in one pass."""
    c: dict[str, Any] = dict.fromkeys(
        (
            "records", "succeeded", "failed", "init_errors", "died", "lost",
            "failed_mini_batches", "tries",
        ),
        0,
    )
    c.update(init_error="", died_error="", first_errors=[])
    for r in records:
        c["records"] += 1
        c["succeeded"] += r["succeeded"]
        c["failed"] += r["failed"]
        status = r.get("status")
        if status == TryStatus.INIT_ERROR:
            c["init_error"] = c["init_error"] if c["init_errors"] else r["error"]
            c["init_errors"] += 1
        if status == TryStatus.WORKER_DIED:
            c["died_error"] = c["died_error"] if c["died"] else r["error"]
            c["died"] += 1
        tries = r.get("tries", [])
        c["tries"] += len(tries)
        if status != TryStatus.WORKER_DIED:
            c["lost"] += sum(
                1 for t in tries if t.get("status") == TryStatus.WORKER_DIED
            )
        if r.get("failed_mini_batch"):
            c["failed_mini_batches"] += 1
            if len(c["first_errors"]) < 5:
                c["first_errors"].append(
                    f"mini-batch {r['index']} ({r['input']}): {r['status']}: "
                    f"{r['error']}"
                )
    return c


def finish(
    store: StateStore,
    cfg: ParallelRunConfig,
    records: Iterable[dict[str, Any]],
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
    """Write the reports of a finished job; return its summary and result.

    ``records`` (in id order) is read a few times, one record at a time: a list,
    or a :class:`~.records.RecordBook`'s ``in_order()`` streamed from disk.
    """
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


def _job_warnings(
    records: Iterable[dict[str, Any]], store: StateStore
) -> list[str]:
    """Why no item succeeded (if none did), then the records' and the assembly's."""
    why = no_success_warning(records)
    warnings = [why] if why else []
    warnings += sorted({r["warning"] for r in records if r.get("warning")})
    return warnings + store.assembly_warnings


def no_success_warning(records: Iterable[dict[str, Any]]) -> str:
    """One line saying why no item succeeded, when none did; else "".

    A job whose every item failed may still be Completed (``error_threshold=-1``
    ignores failures): this line names the most common error, such as a
    ``run()`` that returns a generator.
    """
    errors: Counter[str] = Counter()
    n = 0
    for r in records:
        if r.get("succeeded"):
            return ""
        n += 1
        if r.get("error"):
            errors[r["error"]] += 1
    if not errors:
        return ""
    error, count = errors.most_common(1)[0]
    share = f"all {count}" if count == n else f"{count} of {n}"
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
