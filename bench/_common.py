"""Shared helpers for the bench/ scripts: child processes, timing, RSS, tables.

Every measured variant runs in a fresh child process (``python bench_x.py --child
...``), so each figure starts cold (as a user's job would), its peak RSS is its own,
and Ray and Dask never share a process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
DEFAULT_DATA = HERE / "data"
DEFAULT_OUT = HERE / "out"
RESULT_PREFIX = "BENCH-RESULT "

# One BLAS thread per process everywhere: the single-process loop is then really one
# core, and the 2-process variants do not oversubscribe the 2 cores. (Dask's nanny and
# Ray set the same variables in their workers.)
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def peak_rss_mib() -> float:
    """Peak resident set size of this process, in MiB.

    ``VmHWM`` from /proc where there is one: ``getrusage().ru_maxrss`` of a child
    started by fork+exec also counts the parent's RSS at the fork (Linux carries the
    old memory map's high-water mark over ``execve``), which would charge the
    benchmark driver's memory to every variant.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ray_available() -> bool:
    """Whether ray is installed (without importing it into the driver process)."""
    return importlib.util.find_spec("ray") is not None


def emit(result: dict[str, Any]) -> None:
    """Child side: report one result to the parent (last line of stdout)."""
    result.setdefault("peak_rss_mib", round(peak_rss_mib(), 1))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(
    script: Path, args: list[str], label: str, log_dir: Path, timeout_s: float = 3600
) -> dict[str, Any]:
    """Run ``script --child ARGS`` in a fresh interpreter and return its result.

    The child's stdout/stderr go to ``log_dir/<label>.log``; on failure the tail is
    printed and a result with ``error`` is returned so the other variants still run.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{label}.log"
    env = {**os.environ, **THREAD_ENV, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(script), "--child", *args]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout_s
        )
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        err = (exc.stderr or "") + f"\n[bench] timed out after {timeout_s} s"
        out, err = (
            (out if isinstance(out, str) else out.decode()),
            (err if isinstance(err, str) else err.decode()),
        )
        code = -1
    log_path.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}\n")
    results = [
        line[len(RESULT_PREFIX) :]
        for line in out.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    if code != 0 or not results:
        tail = "\n".join((out + "\n" + err).strip().splitlines()[-15:])
        print(
            f"[{label}] FAILED (exit {code}); log: {log_path}\n{tail}", file=sys.stderr
        )
        return {
            "variant": label,
            "error": f"exit {code}, see {log_path}",
            "process_s": round(time.perf_counter() - start, 2),
        }
    result = json.loads(results[-1])
    result["process_s"] = round(time.perf_counter() - start, 2)
    return result


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 0.1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(
    rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str = ""
) -> str:
    """Print (and return) a Markdown table of ``rows`` with (key, header) columns."""
    lines = []
    if title:
        lines.append(f"\n### {title}\n")
    lines.append("| " + " | ".join(h for _, h in columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k)) for k, _ in columns) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def save_results(
    name: str, rows: list[dict[str, Any]], extra: dict | None = None
) -> Path:
    folder = HERE / "results"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    payload = {
        "bench": name,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "argv": sys.argv,
        "rows": rows,
        **(extra or {}),
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "numpy",
        "pandas",
        "pyarrow",
        "dask",
        "distributed",
        "ray",
        "daskscore",
    ):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found
