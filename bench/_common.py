"""Shared helpers for the bench/ scripts: child processes, timing, RSS, tables.

Every measured variant runs in a fresh child process (``python bench_x.py --child
...``), so each figure starts cold (as a user's job would), its peak RSS is its own,
and Ray and Dask never share a process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import resource
import statistics
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
# Ray set the same variables in their workers; daskscore's embedded cluster starts its
# workers without a nanny and does not.) BENCH_BLAS_THREADS=default turns this off.
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
    # CPU of this process alone: for daskscore the client *and* the scheduler (the
    # embedded cluster's scheduler runs in the client process); for Ray the driver.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.setdefault("client_cpu_s", round(usage.ru_utime + usage.ru_stime, 2))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(
    script: Path, args: list[str], label: str, log_dir: Path, timeout_s: float = 3600
) -> dict[str, Any]:
    """Run ``script --child ARGS`` in a fresh interpreter and return its result.

    The child's stdout/stderr go to ``log_dir/<label>.log``; on failure the tail is
    printed and a result with ``error`` is returned so the other variants still run.
    Besides the child's own figures the result holds ``cpu_s``: the CPU seconds
    (user + sys) of the child and all its descendants (workers, nannies, runner
    processes, Ray's daemons and actors), which unlike wall time barely moves with
    the load other users put on the machine.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{label}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if os.environ.get("BENCH_BLAS_THREADS", "1") != "default":
        env.update(THREAD_ENV)
    cmd = [sys.executable, str(script), "--child", *args]
    load_before = os.getloadavg()[0]
    reaped_before = _children_cpu_s()
    start = time.perf_counter()
    with (
        open(log_dir / f"{label}.stdout", "w+") as out_f,
        open(log_dir / f"{label}.stderr", "w+") as err_f,
    ):
        proc = subprocess.Popen(cmd, env=env, stdout=out_f, stderr=err_f, text=True)
        tree = _TreeCpu(proc.pid)
        code = None
        while code is None:
            tree.sample()
            try:
                code = proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                if time.perf_counter() - start > timeout_s:
                    proc.kill()
                    code = proc.wait()
                    err_f.write(f"\n[bench] killed after {timeout_s} s\n")
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    for suffix in (".stdout", ".stderr"):
        (log_dir / f"{label}{suffix}").unlink()
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
    # Two views of the process tree's CPU time: what the kernel reports for reaped
    # descendants (exact, but misses processes re-parented away, e.g. Ray's) and
    # what the sampler saw of every descendant (misses the last <0.25 s of each).
    reaped = _children_cpu_s() - reaped_before
    result["cpu_reaped_s"] = round(reaped, 2)
    result["cpu_sampled_s"] = round(tree.total(), 2)
    result["cpu_s"] = round(max(reaped, tree.total()), 2)
    result["load_1m"] = round(max(load_before, os.getloadavg()[0]), 1)
    return result


class _TreeCpu:
    """CPU seconds of a process and all its descendants, by polling with psutil."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[tuple[int, float], float] = {}

    def sample(self) -> None:
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil comes with distributed
            return
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    key = (p.pid, p.create_time())
                self.seen[key] = max(self.seen.get(key, 0.0), t.user + t.system)
            except psutil.Error:
                continue

    def total(self) -> float:
        return sum(self.seen.values())


def parser(doc: str, variants: str, repeat: int) -> argparse.ArgumentParser:
    """The options of every benchmark script: ``--data-dir``, ``--out-dir``,
    ``--variants`` (a comma list), ``--repeat``, and the hidden ``--child`` and
    ``--variant`` that :func:`run_child` passes to the child."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--out-dir", default=str(DEFAULT_OUT))
    p.add_argument("--variants", default=variants)
    p.add_argument("--repeat", type=int, default=repeat)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    return p


def parse_args(
    p: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace:
    """Parsed, with ``data_dir`` and ``out_dir`` absolute (entry scripts run in
    the workers' own working directories)."""
    args = p.parse_args(argv)
    args.data_dir = str(Path(args.data_dir).resolve())
    args.out_dir = str(Path(args.out_dir).resolve())
    return args


def run_plan(
    script: Path,
    plan: list[tuple[str, list[str]]],
    repeat: int,
    log_dir: Path,
    describe,
    timeout_s: float = 3600,
) -> list[dict[str, Any]]:
    """Run each ``(label, child args)`` of ``plan`` ``repeat`` times, each in a
    fresh child (:func:`run_child`); print ``describe(result)`` after each run.

    Returns the results, each with ``repeat`` (1-based) and ``variant`` (the
    child's own, else the label)."""
    rows = []
    for rep in range(repeat):
        for label, child_args in plan:
            result = run_child(
                script, child_args, f"{label}-{rep + 1}", log_dir, timeout_s
            )
            result.setdefault("variant", label)
            result["repeat"] = rep + 1
            error = f"  ERROR {result['error']}" if "error" in result else ""
            print(
                f"  {result['variant']} (run {rep + 1}): {describe(result)}{error}",
                flush=True,
            )
            rows.append(result)
    return rows


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def best_of(rows: list[dict[str, Any]], fields: list[str]) -> list[dict[str, Any]]:
    """One row per variant: run count, and min / median of each field over the runs.

    On a shared, loaded machine the minimum is the least disturbed run; the median
    shows how far a typical run was from it.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if "error" not in row:
            groups.setdefault(row["variant"], []).append(row)
    out = []
    for variant, runs in groups.items():
        summary: dict[str, Any] = {"variant": variant, "runs": len(runs)}
        for key in ("items", "rows", "mini_batches"):
            if key in runs[0]:
                summary[key] = runs[0][key]
        for field in fields:
            values = sorted(r[field] for r in runs if r.get(field) is not None)
            if values:
                summary[f"{field}_min"] = values[0]
                summary[f"{field}_median"] = statistics.median(values)
        loads = [r["load_1m"] for r in runs if "load_1m" in r]
        if loads:
            summary["load"] = f"{min(loads):.1f}-{max(loads):.1f}"
        out.append(summary)
    return out


def daskscore_step(
    name: str,
    entry_script: str,
    dataset: Any,
    output: str,
    mini_batch_size: str,
    processes: int,
    arguments: list[str],
    append_row_file_name: str | None = None,
    run_invocation_timeout: float = 600,
) -> Any:
    """The ParallelRunStep every daskscore benchmark variant runs (one try, no
    failure budget, collected output, one node of ``processes`` workers)."""
    import daskscore as ds

    config = ds.ParallelRunConfig(
        entry_script=entry_script,
        source_directory=str(SCRIPTS),
        mini_batch_size=mini_batch_size,
        error_threshold=-1,
        output_action="append_row",
        append_row_file_name=append_row_file_name,
        node_count=1,
        process_count_per_node=processes,
        run_invocation_timeout=run_invocation_timeout,
        run_max_try=1,
    )
    return ds.ParallelRunStep(
        name=name,
        parallel_run_config=config,
        inputs=[dataset],
        output=output,
        arguments=arguments,
    )
