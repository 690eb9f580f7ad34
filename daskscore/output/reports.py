"""The ``logs/`` folder of a step's output: what happened, in files a user can act on.

::

    logs/
      readme.txt                    this layout, in words
      job_result.txt                status, counts, the root cause when Failed
      job_report.json               the same as numbers
      job_progress_overview.txt     progress lines written while the job ran
      processed_mini-batches.csv    one row per try of every mini-batch
      user/<worker>/entry_script.log  the script's logger (EntryScript().logger)
      user/<worker>/stdout.txt, stderr.txt   what the script printed
      user/error/mini-batch-000000042.try1.txt  the full traceback of a failed try
      sys/worker-<n>.log            the embedded cluster's worker logs (written by
                                    the engine, not here)

``processed_mini-batches.csv`` has one row per try (:data:`TRIES_COLUMNS`); its
``status`` is a :class:`~daskscore._protocol.TryStatus`: RUN_DONE, RUN_EXCEPTION,
RUN_TIMEOUT, READ_ERROR, INIT_ERROR, and in rows of try 0 WORKER_DIED (the try
was lost with its worker) or INTERRUPTED (an earlier run left it unfinished).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import textwrap
from collections.abc import Iterable, Iterator
from typing import Any

from .._protocol import TryStatus
from ..storage import is_local
from .store import remove_quietly, temp_name, write_atomic

__all__ = ["TRIES_COLUMNS", "write_reports"]

TRIES_COLUMNS = [
    "mini_batch_id",
    "try",
    "worker",
    "items",
    "succeeded",
    "failed",
    "elapsed_seconds",
    "run_seconds",
    "read_seconds",
    "peak_rss_mib",
    "status",
    "error",
    "input",
]

_STATUSES = "\n".join(
    f"{'':28}{line}" for line in textwrap.wrap(", ".join(TryStatus), 56)
)
_README = f"""\
Logs of a daskscore step.

job_result.txt              Status (Completed / Failed), item and mini-batch counts,
                            and, when Failed, the root cause and where to look.
job_report.json             The same figures as JSON, plus timings and throughput.
job_progress_overview.txt   Progress lines written while the job ran.
processed_mini-batches.csv  One row per try of every mini-batch: mini_batch_id, try,
                            worker, items, succeeded, failed, elapsed_seconds,
                            run_seconds, read_seconds, peak_rss_mib (the runner
                            process's peak resident memory during the try, MiB;
                            empty when the runner could not tell), status, error,
                            input (which files / byte ranges / row groups). The
                            statuses:
{_STATUSES}
                            (WORKER_DIED and INTERRUPTED rows have try 0: a try
                            lost with its worker, or left unfinished by an
                            earlier run of the step).
user/error/                 The full traceback of every failed try, one file each.
user/<worker>/              Per worker process: entry_script.log (EntryScript().logger),
                            stdout.txt and stderr.txt (what the script printed).
"""


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value


def tries_rows(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The rows of ``processed_mini-batches.csv``, one per try, as they are read."""
    for record in records:
        for t in record.get("tries", []):
            yield (
                {
                    "mini_batch_id": record["index"],
                    "try": t.get("try"),
                    "worker": t.get("worker", ""),
                    "items": t.get("items"),
                    "succeeded": t.get("succeeded"),
                    "failed": t.get("failed"),
                    "elapsed_seconds": round(t.get("elapsed_seconds", 0.0), 4),
                    "run_seconds": round(t.get("run_seconds", 0.0), 4),
                    "read_seconds": round(t.get("read_seconds", 0.0), 4),
                    "peak_rss_mib": _blank_if_none(t.get("peak_rss_mib")),
                    "status": t.get("status"),
                    "error": t.get("error", ""),
                    "input": record.get("input", ""),
                }
            )


def result_text(summary: dict[str, Any]) -> str:
    lines = [
        f"Status: {summary['status']}",
        f"Step: {summary['step']}",
        f"Items: {summary['succeeded_items']} succeeded, {summary['failed_items']} "
        f"failed, {summary['total_items']} in all",
        f"Mini-batches: {summary['mini_batches']} "
        f"({summary['failed_mini_batches']} failed, {summary['tries']} tries)",
        f"Elapsed: {summary['elapsed_seconds']:.2f} s "
        f"({summary['items_per_second']:.1f} items/s)",
    ]
    if summary.get("resumed_mini_batches"):
        lines.append(
            f"Resumed: {summary['resumed_mini_batches']} mini-batches were already "
            "committed by an earlier run and were not scored again"
        )
    if summary.get("lost_tries"):
        lines.append(
            f"Worker restarts: {summary['lost_tries']} tries were lost when their "
            "worker died; those mini-batches were scored again elsewhere (status "
            "WORKER_DIED in processed_mini-batches.csv)"
        )
    if summary.get("output_file"):
        lines.append(f"Output: {summary['output_file']}")
    if summary["status"] != "Completed":
        lines.append(f"Root cause: {summary.get('reason') or 'unknown'}")
    if summary.get("warnings"):
        lines.append("Warnings:")
        lines.extend(f"  {w}" for w in summary["warnings"][:5])
    if summary.get("first_errors"):
        lines.append("First errors:")
        lines.extend(f"  {e}" for e in summary["first_errors"])
    if summary["failed_mini_batches"] or summary["failed_items"]:
        lines.append(
            "Where to look: logs/processed_mini-batches.csv (every try), "
            "logs/user/error/ (full tracebacks), logs/user/<worker>/ (script logs)"
        )
    return "\n".join(lines) + "\n"


def _write_tries(fs, path: str, records: Iterable[dict[str, Any]]) -> None:
    """``processed_mini-batches.csv``, streamed through a local file: a job of
    a million mini-batches never holds its rows (locally the file is written
    under a temporary name and renamed, as :func:`write_atomic` does)."""
    local = is_local(fs)
    if local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), temp_name())
    else:
        fd, tmp = tempfile.mkstemp(prefix="daskscore-tries-", suffix=".csv")
        os.close(fd)
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=TRIES_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(tries_rows(records))
        if local:
            os.replace(tmp, path)
        else:
            fs.put_file(tmp, path)  # a blob upload is all-or-nothing
    finally:
        remove_quietly(tmp)


def write_reports(
    fs,
    log_dir: str,
    summary: dict[str, Any],
    records: Iterable[dict[str, Any]],
    progress_lines: list[str],
) -> None:
    """Write every report file into ``log_dir`` (local path or remote, via ``fs``)."""
    fs.makedirs(log_dir, exist_ok=True)
    write_atomic(fs, f"{log_dir}/readme.txt", _README.encode())
    write_atomic(fs, f"{log_dir}/job_result.txt", result_text(summary).encode())
    report = {k: v for k, v in summary.items() if k != "first_errors"}
    write_atomic(
        fs,
        f"{log_dir}/job_report.json",
        json.dumps(report, indent=2, default=str).encode(),
    )
    _write_tries(fs, f"{log_dir}/processed_mini-batches.csv", records)
    write_atomic(
        fs,
        f"{log_dir}/job_progress_overview.txt",
        "".join(f"{line}\n" for line in progress_lines).encode(),
    )
    for record in records:
        for t in record.get("tries", []):
            if t.get("status") == "RUN_DONE" or not (
                t.get("traceback") or t.get("error")
            ):
                continue
            text = (
                f"mini-batch {record['index']} ({record.get('input', '')}), try "
                f"{t.get('try')}, worker {t.get('worker', '')}: {t.get('status')}\n"
                f"{t.get('error', '')}\n\n{t.get('traceback', '')}"
            )
            name = f"mini-batch-{record['index']:09d}.try{t.get('try')}.txt"
            write_atomic(fs, f"{log_dir}/user/error/{name}", text.encode())
