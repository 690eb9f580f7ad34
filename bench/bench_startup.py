"""Start-up benchmark: cluster start + ``init()`` for a trivial entry script.

``daskscore``: a ``ParallelRunStep`` on ``scripts/trivial.py`` (``init()`` does
nothing, ``run()`` returns its input) over a tiny FileDataset (``--files`` files,
default 20, ``mini_batch_size=10``), with ``--processes`` worker processes (default
2; the step starts and closes its own LocalCluster). Reports:

- ``first mini-batch s``: from calling ``step.run()`` to the end of the first
  ``run()`` call (the script appends ``time.time()`` to a stamp file per call), i.e.
  cluster start + script shipping + ``init()`` + one mini-batch;
- ``whole run s``: ``step.run()`` from call to return (including writing the output
  and reports and closing the cluster).

``daskscore-second``: two ``step.run()`` calls in one process (a notebook), with
``daskscore.embedded-cluster.keep`` on; the figures are the second call's, which
finds the first one's cluster running.

``ray`` (if installed): ``ray.init()`` + ``map_batches`` with 2 actors on the same
tiny input, until ``take_all()`` returns, for comparison.

Every repeat is a fresh process (cold start as a user would see it).

    python bench/bench_startup.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import _common as C


def _tiny_input(args: argparse.Namespace) -> list[str]:
    folder = Path(args.data_dir) / "png"
    return sorted(str(folder / n) for n in os.listdir(folder))[: args.files]


def child_daskscore(args: argparse.Namespace) -> dict:
    if args.variant != "daskscore-second":
        return _one_run(args, f"daskscore-startup-{args.processes}")
    import dask

    with dask.config.set({"daskscore.embedded-cluster.keep": True}):
        # a notebook scoring again into the same (emptied) output folder: a kept
        # runner serves only a job of the same script and output folder
        _one_run(args, f"daskscore-startup-{args.processes}-kept")
        row = _one_run(args, f"daskscore-startup-{args.processes}-kept")
    row["variant"] = f"daskscore {args.processes} proc, 2nd run() in-process"
    return row


def _one_run(args: argparse.Namespace, name: str) -> dict:
    import daskscore as ds

    out = Path(args.out_dir) / name
    shutil.rmtree(out, ignore_errors=True)
    stamp = Path(args.out_dir) / f"startup-stamps-{os.getpid()}.txt"
    stamp.unlink(missing_ok=True)
    files = ds.Dataset.File.from_files(path=_tiny_input(args))
    step = C.daskscore_step(
        "bench-startup",
        "trivial.py",
        files,
        str(out),
        "10",
        args.processes,
        ["--stamp", str(stamp)],
        run_invocation_timeout=60,
    )
    wall_start = time.time()
    start = time.perf_counter()
    result = step.run()
    whole = time.perf_counter() - start
    stamps = [float(x) for x in stamp.read_text().split()] if stamp.exists() else []
    stamp.unlink(missing_ok=True)
    return {
        "variant": f"daskscore {args.processes} proc",
        "status": result.status,
        "items": result.total_items,
        "succeeded": result.succeeded_items,
        "first_mb_s": round(min(stamps) - wall_start, 3) if stamps else None,
        "whole_s": round(whole, 3),
        "run_calls": len(stamps),
    }


def child_ray(args: argparse.Namespace) -> dict:
    import ray

    class Trivial:
        def __call__(self, batch):
            return batch

    paths = _tiny_input(args)
    start = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    init_s = time.perf_counter() - start
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = (
        ray.data.from_items([{"path": p} for p in paths])
        .map_batches(
            Trivial,
            batch_size=10,
            concurrency=args.processes,
            num_cpus=0.5,
        )
        .take_all()
    )
    whole = time.perf_counter() - start
    ray.shutdown()
    return {
        "variant": f"ray {args.processes} actors",
        "items": len(rows),
        "ray_init_s": round(init_s, 3),
        "whole_s": round(whole, 3),
    }


COLUMNS = [
    ("variant", "variant"),
    ("repeat", "run"),
    ("items", "files"),
    ("first_mb_s", "step.run() -> first mini-batch done, s"),
    ("whole_s", "whole run s"),
    ("ray_init_s", "ray.init() s"),
    ("cpu_s", "CPU s (all procs)"),
    ("load_1m", "load avg"),
    ("peak_rss_mib", "client peak RSS MiB"),
    ("status", "status"),
]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = C.parser(__doc__, "daskscore,ray", 3)
    parser.add_argument(
        "--processes",
        default="2",
        help="worker processes; a comma list runs each (e.g. 1,2)",
    )
    parser.add_argument("--files", type=int, default=20)
    args = C.parse_args(parser, argv)

    if args.child:
        args.processes = int(args.processes)
        run = {
            "daskscore": child_daskscore,
            "daskscore-second": child_daskscore,
            "ray": child_ray,
        }
        C.emit(run[args.variant](args))
        return []

    if not (Path(args.data_dir) / "png").is_dir():
        sys.exit(f"no {Path(args.data_dir) / 'png'}: run bench/make_data.py first")
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    print(
        f"startup: trivial script, {args.files} files, mini_batch_size=10; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    common = [
        "--data-dir",
        args.data_dir,
        "--out-dir",
        args.out_dir,
        "--files",
        str(args.files),
    ]
    plan = []
    for variant in args.variants.split(","):
        if variant == "ray" and not C.ray_available():
            print("ray not installed", flush=True)
            continue
        for procs in args.processes.split(","):
            plan.append((
                f"startup-{variant}-{procs}",
                [*common, "--variant", variant, "--processes", procs],
            ))
    rows = C.run_plan(
        Path(__file__), plan, args.repeat, Path(args.out_dir) / "logs",
        lambda r: f"first mini-batch {C.fmt(r.get('first_mb_s'))} s, "
        f"whole {C.fmt(r.get('whole_s'))} s",
        timeout_s=300,
    )
    C.print_table(rows, COLUMNS, title="start-up (trivial script), every run")
    best = C.best_of(rows, ["first_mb_s", "whole_s", "ray_init_s", "cpu_s"])
    for b in best:
        for key in ("first_mb_s", "whole_s", "ray_init_s", "cpu_s"):
            if f"{key}_min" in b:
                b[key] = f"{b[f'{key}_min']:.2f} ({b[f'{key}_median']:.2f})"
    C.print_table(
        best,
        [
            ("variant", "variant"),
            ("runs", "runs"),
            ("first_mb_s", COLUMNS[3][1]),
            ("whole_s", "whole run s"),
            ("ray_init_s", "ray.init() s"),
            ("cpu_s", "CPU s (all procs)"),
            ("load", "load avg"),
        ],
        title=f"start-up (trivial script), best (median) of {args.repeat}",
    )
    print(f"results saved to {C.save_results('startup', rows, {'best': best})}")
    return rows


if __name__ == "__main__":
    main()
