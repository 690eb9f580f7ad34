"""File benchmark: score N small PNG files, 10 per mini-batch (``--mini-batch-size``).

Variants, each in its own fresh process, side by side:

- ``single``: a plain loop in one process: list the folder, take the sorted files 10
  at a time, score them with the same functions as ``scripts/score_png.py`` (open
  with PIL, 64 block-mean features, MLP), write ``name: score`` lines to one text file.
- ``daskscore``: ``ParallelRunStep`` with 2 worker processes, ``scripts/score_png.py``,
  ``mini_batch_size="10"``, ``append_row`` into ``parallel_run_step.txt``.
- ``daskscore-trivial``: the same with ``scripts/trivial.py`` (``run`` returns its
  input): what daskscore itself costs per mini-batch.
- ``ray``: Ray Data ``from_items(paths) -> map_batches(actor class, batch_size=10,
  concurrency=2) -> write_parquet`` on a 2-CPU local Ray (if ray imports).

Per-mini-batch overhead is reported two ways: ``(daskscore wall - single wall / 2) /
mini-batches`` (what the engine adds on top of ideal 2-way parallel work), and
``trivial wall / mini-batches`` (the whole cost of one mini-batch when ``run()`` does
nothing, cluster start included). From the engine's ``processed_mini-batches.csv`` it
also reports the mean in-worker time outside ``run()`` (elapsed - run seconds).

    python bench/bench_files.py
    python bench/bench_files.py --data-dir bench/data-small --variants single,daskscore
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from pathlib import Path

import _common as C

MINI_BATCH = 10  # the default of --mini-batch-size


def _score_png_module():
    sys.path.insert(0, str(C.SCRIPTS))
    import score_png

    return score_png


def _list_pngs(folder: Path) -> list[str]:
    return sorted(str(folder / name) for name in os.listdir(folder))


def _check_text(path: Path) -> dict:
    lines, total, ordered, last = 0, 0.0, True, ""
    with open(path) as f:
        for line in f:
            name, _, value = line.rstrip("\n").rpartition(": ")
            lines += 1
            total += float(value)
            ordered = ordered and name >= last
            last = name
    return {"out_items": lines, "score_sum": round(total, 3), "in_order": ordered}


def _engine_overhead(output_dir: Path) -> dict:
    """Mean per-try time inside the worker that is not ``run()`` (read, commit, ...)."""
    path = output_dir / "logs" / "processed_mini-batches.csv"
    if not path.exists():
        return {}
    elapsed = run = 0.0
    n = 0
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                elapsed += float(row["elapsed_seconds"])
                run += float(row["run_seconds"])
            except (KeyError, ValueError):
                continue
            n += 1
    if not n:
        return {}
    return {
        "worker_ms_per_mb_outside_run": 1000 * (elapsed - run) / n,
        "worker_ms_per_mb_in_run": 1000 * run / n,
    }


def child_single(args: argparse.Namespace) -> dict:
    sp = _score_png_module()
    folder = Path(args.data_dir) / "png"
    out = Path(args.out_dir) / "single-files"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    out_file = out / "scores.txt"
    start = time.perf_counter()
    model = sp.load(str(Path(args.data_dir) / "mlp.npz"))
    paths = _list_pngs(folder)
    size = args.mini_batch_size
    with open(out_file, "w") as f:
        for i in range(0, len(paths), size):
            for line in sp.score(model, paths[i : i + size]):
                f.write(f"{line}\n")
    wall = time.perf_counter() - start
    return {
        "variant": "single",
        "items": len(paths),
        "wall_s": round(wall, 2),
        "items_per_s": len(paths) / wall,
        "mini_batches": -(-len(paths) // size),
        **_check_text(out_file),
    }


def child_daskscore(args: argparse.Namespace) -> dict:
    import daskscore as ds

    trivial = args.variant == "daskscore-trivial"
    folder = Path(args.data_dir) / "png"
    out = Path(args.out_dir) / (
        "daskscore-files-trivial" if trivial else "daskscore-files"
    )
    shutil.rmtree(out, ignore_errors=True)  # a repeated run would resume, not rerun
    files = ds.Dataset.File.from_files(path=str(folder))
    step = C.daskscore_step(
        "bench-files",
        "trivial.py" if trivial else "score_png.py",
        files,
        str(out),
        str(args.mini_batch_size),
        args.processes,
        ["--model", str(Path(args.data_dir) / "mlp.npz")],
    )
    start = time.perf_counter()
    result = step.run()
    wall = time.perf_counter() - start
    collected = Path(result.output_dir) / "parallel_run_step.txt"
    if trivial:
        with open(collected) as f:
            check = {"out_items": sum(1 for _ in f)}
    else:
        check = _check_text(collected) if collected.exists() else {"out_items": 0}
    n_mb = getattr(result, "mini_batches", None) or -(
        -result.total_items // args.mini_batch_size
    )
    return {
        "variant": args.variant,
        "items": result.total_items,
        "succeeded": result.succeeded_items,
        "status": result.status,
        "mini_batches": n_mb,
        "wall_s": round(wall, 2),
        "engine_elapsed_s": getattr(result, "elapsed_seconds", None),
        "items_per_s": result.total_items / wall,
        **check,
        **_engine_overhead(Path(result.output_dir)),
    }


def child_ray(args: argparse.Namespace) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import ray

    folder = Path(args.data_dir) / "png"
    out = Path(args.out_dir) / "ray-files"
    shutil.rmtree(out, ignore_errors=True)
    model_path = str(Path(args.data_dir) / "mlp.npz")
    scripts = str(C.SCRIPTS)

    class Scorer:
        def __init__(self, model_path: str, scripts: str) -> None:
            sys.path.insert(0, scripts)
            import score_png

            self.sp = score_png
            self.model = score_png.load(model_path)

        def __call__(self, batch):
            return {"line": self.sp.score(self.model, list(batch["path"]))}

    start = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    init_s = time.perf_counter() - start
    ray.data.DataContext.get_current().enable_progress_bars = False
    paths = _list_pngs(folder)
    dataset = ray.data.from_items([{"path": p} for p in paths])
    scored = dataset.map_batches(
        Scorer,
        fn_constructor_args=(model_path, scripts),
        batch_format="numpy",
        batch_size=args.mini_batch_size,
        concurrency=2,
        num_cpus=args.ray_actor_cpus,
    )
    scored.write_parquet(str(out))
    wall = time.perf_counter() - start
    ray.shutdown()
    items, total = 0, 0.0
    for part in sorted(out.glob("*.parquet")):
        lines = pq.read_table(part)["line"]
        items += len(lines)
        values = pc.cast(
            pc.utf8_slice_codeunits(lines, start=len("img-000000.png: ")), "float64"
        )
        total += pc.sum(values).as_py() or 0.0
    return {
        "variant": "ray",
        "items": len(paths),
        "wall_s": round(wall, 2),
        "setup_s": round(init_s, 3),
        "items_per_s": len(paths) / wall,
        "mini_batches": -(-len(paths) // args.mini_batch_size),
        "out_items": items,
        "score_sum": round(total, 3),
    }


COLUMNS = [
    ("variant", "variant"),
    ("items", "files"),
    ("mini_batches", "mini-batches"),
    ("wall_s", "end-to-end s"),
    ("items_per_s", "files/s"),
    ("vs_ideal", "x ideal (single/2)"),
    ("overhead_ms_per_mb", "overhead ms/mini-batch"),
    ("worker_ms_per_mb_outside_run", "in-worker ms/mb outside run()"),
    ("cpu_s", "CPU s (all procs)"),
    ("cpu_vs_single", "CPU x single"),
    ("overhead_cpu_ms_per_mb", "overhead CPU ms/mini-batch"),
    ("client_cpu_s", "client+scheduler CPU s"),
    ("load_1m", "load avg"),
    ("peak_rss_mib", "client peak RSS MiB"),
    ("out_items", "lines out"),
    ("score_sum", "score sum"),
    ("in_order", "in order"),
]


def summarize(rows: list[dict]) -> None:
    singles = [
        r["wall_s"] for r in rows if r.get("variant") == "single" and "wall_s" in r
    ]
    ideal = min(singles) / 2 if singles else None
    single_cpu = min(
        (r["cpu_s"] for r in rows if r.get("variant") == "single" and "cpu_s" in r),
        default=None,
    )
    for r in rows:
        if "wall_s" not in r or not r.get("mini_batches"):
            continue
        n_mb = r["mini_batches"]
        if ideal:
            r["vs_ideal"] = r["wall_s"] / ideal
        if single_cpu and "cpu_s" in r:
            r["cpu_vs_single"] = r["cpu_s"] / single_cpu
        if r["variant"] == "daskscore-trivial":
            r["overhead_ms_per_mb"] = 1000 * r["wall_s"] / n_mb
            if "cpu_s" in r:
                r["overhead_cpu_ms_per_mb"] = 1000 * r["cpu_s"] / n_mb
        elif r["variant"] != "single":
            if ideal:
                r["overhead_ms_per_mb"] = 1000 * (r["wall_s"] - ideal) / n_mb
            if single_cpu and "cpu_s" in r:
                r["overhead_cpu_ms_per_mb"] = 1000 * (r["cpu_s"] - single_cpu) / n_mb


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(C.DEFAULT_DATA))
    parser.add_argument("--out-dir", default=str(C.DEFAULT_OUT))
    parser.add_argument(
        "--variants",
        default="single,daskscore,daskscore-trivial,ray",
        help="comma list of single, daskscore, daskscore-trivial, ray",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--mini-batch-size",
        type=int,
        default=MINI_BATCH,
        help="files per mini-batch (all variants)",
    )
    parser.add_argument(
        "--ray-actor-cpus",
        type=float,
        default=0.5,
        help="logical CPUs per Ray actor (1.0 deadlocks on 2 CPUs)",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.data_dir = str(Path(args.data_dir).resolve())
    args.out_dir = str(Path(args.out_dir).resolve())

    if args.child:
        run = {
            "single": child_single,
            "daskscore": child_daskscore,
            "daskscore-trivial": child_daskscore,
            "ray": child_ray,
        }
        C.emit(run[args.variant](args))
        return []

    folder = Path(args.data_dir) / "png"
    n_files = len(os.listdir(folder)) if folder.is_dir() else 0
    if not n_files:
        sys.exit(f"no files in {folder}: run bench/make_data.py first")
    print(
        f"files: {n_files:,} PNG files in {folder}, "
        f"mini_batch_size={args.mini_batch_size}; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    common = [
        "--data-dir",
        args.data_dir,
        "--out-dir",
        args.out_dir,
        "--processes",
        str(args.processes),
        "--mini-batch-size",
        str(args.mini_batch_size),
        "--ray-actor-cpus",
        str(args.ray_actor_cpus),
    ]
    plan = []
    for variant in args.variants.split(","):
        if variant == "ray" and not C.ray_available():
            print("ray not installed", flush=True)
            continue
        plan.append(variant)
    rows = []
    log_dir = Path(args.out_dir) / "logs"
    for rep in range(args.repeat):
        for variant in plan:
            result = C.run_child(
                Path(__file__),
                [*common, "--variant", variant],
                f"files-{variant}-{rep + 1}",
                log_dir,
            )
            result.setdefault("variant", variant)
            result["repeat"] = rep + 1
            print(
                f"  {variant} (run {rep + 1}): {C.fmt(result.get('wall_s'))} s, "
                f"{C.fmt(result.get('items_per_s'))} files/s"
                f"{'  ERROR ' + result['error'] if 'error' in result else ''}",
                flush=True,
            )
            rows.append(result)
    summarize(rows)
    C.print_table(
        rows,
        COLUMNS,
        title=f"files: {n_files:,} PNG, mini_batch_size={args.mini_batch_size}, "
        "every run",
    )
    best = best_rows(rows)
    C.print_table(
        best,
        BEST_COLUMNS,
        title=f"files: {n_files:,} PNG, mini_batch_size={args.mini_batch_size}, "
        f"best (median) of {args.repeat}",
    )
    print(f"results saved to {C.save_results('files', rows, {'best': best})}")
    return rows


BEST_COLUMNS = [
    ("variant", "variant"),
    ("runs", "runs"),
    ("mini_batches", "mini-batches"),
    ("wall", "end-to-end s"),
    ("rate", "files/s (best)"),
    ("vs_ideal", "x ideal (single/2)"),
    ("overhead_ms_per_mb", "overhead ms/mini-batch"),
    ("cpu", "CPU s (all procs)"),
    ("cpu_vs_single", "CPU x single"),
    ("overhead_cpu_ms_per_mb", "overhead CPU ms/mini-batch"),
    ("client_cpu_s_median", "client+scheduler CPU s"),
    ("rss", "client peak RSS MiB"),
    ("load", "load avg"),
]


def best_rows(rows: list[dict]) -> list[dict]:
    """Min (median) per variant; ratios and overheads are computed from minimums."""
    best = C.best_of(rows, ["wall_s", "cpu_s", "peak_rss_mib", "client_cpu_s"])
    single = next((b for b in best if b["variant"] == "single"), None)
    for b in best:
        if "wall_s_min" not in b or not b.get("mini_batches"):
            continue
        n_mb = b["mini_batches"]
        b["wall"] = f"{b['wall_s_min']:.2f} ({b['wall_s_median']:.2f})"
        b["cpu"] = f"{b['cpu_s_min']:.1f} ({b['cpu_s_median']:.1f})"
        b["rss"] = b.get("peak_rss_mib_median")
        b["rate"] = b["items"] / b["wall_s_min"] if b.get("items") else None
        if b["variant"] == "daskscore-trivial":
            b["overhead_ms_per_mb"] = 1000 * b["wall_s_min"] / n_mb
            b["overhead_cpu_ms_per_mb"] = 1000 * b["cpu_s_min"] / n_mb
        if not single:
            continue
        ideal = single["wall_s_min"] / 2
        b["vs_ideal"] = b["wall_s_min"] / ideal
        b["cpu_vs_single"] = b["cpu_s_min"] / single["cpu_s_min"]
        if b["variant"] not in ("single", "daskscore-trivial"):
            b["overhead_ms_per_mb"] = 1000 * (b["wall_s_min"] - ideal) / n_mb
            b["overhead_cpu_ms_per_mb"] = (
                1000 * (b["cpu_s_min"] - single["cpu_s_min"]) / n_mb
            )
    return best


if __name__ == "__main__":
    main()
