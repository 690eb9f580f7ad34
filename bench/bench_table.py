"""Tabular benchmark: score N rows x 64 float32 features (Parquet) with a numpy MLP.

Variants, each in its own fresh process, side by side:

- ``single``: a plain loop in one process: read each Parquet file, score it with the
  same functions the entry script uses, write ``id, score`` to one Parquet file.
- ``split2``: the machine's own 2-process floor, no framework: two fresh processes
  each run the plain loop over every other file (imports done before the clock).
- ``daskscore``: ``ParallelRunStep`` with 2 worker processes (``node_count=1,
  process_count_per_node=2``) on the entry script ``scripts/score_table.py``,
  ``output_action="append_row"`` into ``scores.parquet``; one run per
  ``--mini-batch-size``. Its end-to-end time runs from ``step.run()`` (the step
  starts and closes its own LocalCluster) to its return.
- ``ray``: Ray Data ``read_parquet -> map_batches(actor class, concurrency=2) ->
  write_parquet`` on a 2-CPU local Ray, ``ray.init()`` included (if ray imports).

Prints rows/s, end-to-end seconds and the peak RSS of each variant's client /
driver process, and checks that every variant wrote the same number of rows and
the same score total.

    python bench/bench_table.py                          # full data in bench/data
    python bench/bench_table.py --mini-batch-size 4MB,16MB,64MB --repeat 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import _common as C


def _score_table_module():
    sys.path.insert(0, str(C.SCRIPTS))
    import score_table

    return score_table


def _check_output(paths: list[Path]) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows, total = 0, 0.0
    for path in paths:
        table = pq.read_table(path, columns=["score"])
        rows += table.num_rows
        total += pc.sum(table["score"].cast("float64")).as_py() or 0.0
    return {"out_rows": rows, "score_sum": round(total, 3)}


def _input_rows(folder: Path) -> tuple[list[Path], int]:
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    return files, sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _score_files(files: list[Path], out_file: Path, model_path: str) -> int:
    """The plain loop: read each file, score it, append to one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    st = _score_table_module()
    model = st.load(model_path)
    rows = 0
    writer = None
    for path in files:
        frame = pq.read_table(path).to_pandas()
        scored = st.score(model, frame)
        table = pa.Table.from_pandas(scored, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(out_file, table.schema)
        writer.write_table(table)
        rows += len(frame)
    writer.close()
    return rows


def child_single(args: argparse.Namespace) -> dict:
    folder = Path(args.data_dir) / "table"
    out = Path(args.out_dir) / "single-table"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    out_file = out / "scores.parquet"
    start = time.perf_counter()
    rows = _score_files(
        sorted(folder.glob("*.parquet")), out_file, str(Path(args.data_dir) / "mlp.npz")
    )
    wall = time.perf_counter() - start
    return {
        "variant": "single",
        "rows": rows,
        "wall_s": round(wall, 2),
        "rows_per_s": rows / wall,
        **_check_output([out_file]),
    }


def _half(files: list[Path], out_file: Path, model_path: str, go_at: float):
    """One of split2's processes: imports done, start with the other at go_at."""
    import pyarrow.parquet  # noqa: F401 - imported before the clock starts

    _score_table_module()
    time.sleep(max(0.0, go_at - time.time()))
    rows = _score_files(files, out_file, model_path)
    return rows, time.time()


def child_split2(args: argparse.Namespace) -> dict:
    """The machine's own 2-process floor: two plain loops over half the files each.

    No framework at all: two fresh processes (imports done before the clock
    starts) each score every other file into their own Parquet file. What this
    takes is what 2 processes on this machine can do at best; single / 2 assumes
    perfect scaling, which 2 processes reading and scoring at once do not get.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    folder = Path(args.data_dir) / "table"
    out = Path(args.out_dir) / "split2-table"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files = sorted(folder.glob("*.parquet"))
    model_path = str(Path(args.data_dir) / "mlp.npz")
    outs = [out / "scores-0.parquet", out / "scores-1.parquet"]
    go_at = time.time() + 5.0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        done = list(
            pool.map(
                _half, [files[0::2], files[1::2]], outs, [model_path] * 2, [go_at] * 2
            )
        )
    wall = max(end for _, end in done) - go_at
    rows = sum(n for n, _ in done)
    return {
        "variant": "split2 (2 plain loops)",
        "rows": rows,
        "wall_s": round(wall, 2),
        "rows_per_s": rows / wall,
        **_check_output(outs),
    }


def child_daskscore(args: argparse.Namespace) -> dict:
    import daskscore as ds

    folder = Path(args.data_dir) / "table"
    out = Path(args.out_dir) / f"daskscore-table-{args.mini_batch_size}"
    shutil.rmtree(out, ignore_errors=True)  # a repeated run would resume, not rerun
    start = time.perf_counter()
    table = ds.Dataset.Tabular.from_parquet_files(path=str(folder))
    step = C.daskscore_step(
        "bench-table",
        "score_table.py",
        table,
        str(out),
        args.mini_batch_size,
        args.processes,
        ["--model", str(Path(args.data_dir) / "mlp.npz")],
        append_row_file_name="scores.parquet",
    )
    run_start = time.perf_counter()
    result = step.run()
    wall = time.perf_counter() - run_start
    setup = run_start - start
    collected = Path(result.output_dir) / "scores.parquet"
    check = _check_output([collected]) if collected.exists() else {"out_rows": 0}
    return {
        "variant": f"daskscore mbs={args.mini_batch_size}",
        "rows": result.total_items,
        "succeeded": result.succeeded_items,
        "status": result.status,
        "mini_batches": getattr(result, "mini_batches", None),
        "wall_s": round(wall, 2),
        "construct_s": round(setup, 3),
        "engine_elapsed_s": getattr(result, "elapsed_seconds", None),
        "rows_per_s": result.total_items / wall,
        **check,
    }


def child_ray(args: argparse.Namespace) -> dict:
    import ray

    folder = Path(args.data_dir) / "table"
    out = Path(args.out_dir) / "ray-table"
    shutil.rmtree(out, ignore_errors=True)
    model_path = str(Path(args.data_dir) / "mlp.npz")
    scripts = str(C.SCRIPTS)

    class Scorer:
        def __init__(self, model_path: str, scripts: str) -> None:
            sys.path.insert(0, scripts)
            import score_table

            self.st = score_table
            self.model = score_table.load(model_path)

        def __call__(self, frame):
            return self.st.score(self.model, frame)

    start = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    init_s = time.perf_counter() - start
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    batch_size = (
        None if args.ray_batch_size in ("none", "None") else int(args.ray_batch_size)
    )
    dataset = ray.data.read_parquet(str(folder))
    scored = dataset.map_batches(
        Scorer,
        fn_constructor_args=(model_path, scripts),
        batch_format="pandas",
        batch_size=batch_size,
        concurrency=2,
        num_cpus=args.ray_actor_cpus,
    )
    scored.write_parquet(str(out))
    wall = time.perf_counter() - start
    ray.shutdown()
    parts = sorted(out.glob("*.parquet"))
    check = _check_output(parts)
    return {
        "variant": f"ray batch_size={args.ray_batch_size}",
        "rows": check["out_rows"],
        "wall_s": round(wall, 2),
        "setup_s": round(init_s, 3),
        "rows_per_s": check["out_rows"] / wall,
        **check,
    }


COLUMNS = [
    ("variant", "variant"),
    ("rows", "rows"),
    ("wall_s", "end-to-end s"),
    ("setup_s", "of which ray.init s"),
    ("rows_per_s", "rows/s"),
    ("vs_ideal", "x ideal (single/2)"),
    ("cpu_s", "CPU s (all procs)"),
    ("cpu_vs_single", "CPU x single"),
    ("client_cpu_s", "client+scheduler CPU s"),
    ("load_1m", "load avg"),
    ("peak_rss_mib", "client peak RSS MiB"),
    ("out_rows", "rows out"),
    ("score_sum", "score sum"),
]


def summarize(rows: list[dict]) -> None:
    singles = [
        r["wall_s"] for r in rows if r.get("variant") == "single" and "wall_s" in r
    ]
    if not singles:
        return
    ideal = min(singles) / 2
    single_cpu = min(
        (r["cpu_s"] for r in rows if r.get("variant") == "single" and "cpu_s" in r),
        default=None,
    )
    for r in rows:
        if "wall_s" in r:
            r["vs_ideal"] = r["wall_s"] / ideal
        # On an idle machine a 2-process run takes at least cpu_s / 2, and the
        # single loop about its cpu_s: this ratio bounds "x ideal" from below.
        if single_cpu and "cpu_s" in r:
            r["cpu_vs_single"] = r["cpu_s"] / single_cpu


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(C.DEFAULT_DATA))
    parser.add_argument("--out-dir", default=str(C.DEFAULT_OUT))
    parser.add_argument(
        "--variants",
        default="single,split2,daskscore,ray",
        help="comma list of single, split2, daskscore, ray",
    )
    parser.add_argument(
        "--mini-batch-size",
        default="16MB",
        help="daskscore mini_batch_size; a comma list runs each",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--ray-batch-size",
        default="65536",
        help="rows per Ray batch ('none' = a whole block)",
    )
    parser.add_argument(
        "--ray-actor-cpus",
        type=float,
        default=0.5,
        help="logical CPUs per Ray actor; 1.0 deadlocks on a 2-CPU Ray "
        "(the 2 actors hold both CPUs, the read tasks never run)",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Entry scripts run in the workers' own working directories: absolute paths only.
    args.data_dir = str(Path(args.data_dir).resolve())
    args.out_dir = str(Path(args.out_dir).resolve())

    if args.child:
        run = {
            "single": child_single,
            "split2": child_split2,
            "daskscore": child_daskscore,
            "ray": child_ray,
        }
        C.emit(run[args.variant](args))
        return []

    folder = Path(args.data_dir) / "table"
    files, n_rows = _input_rows(folder)
    if not files:
        sys.exit(f"no Parquet files in {folder}: run bench/make_data.py first")
    print(
        f"table: {n_rows:,} rows in {len(files)} files ({folder}); "
        f"{os.cpu_count()} CPUs; versions {C.versions()}",
        flush=True,
    )
    common = ["--data-dir", args.data_dir, "--out-dir", args.out_dir]
    log_dir = Path(args.out_dir) / "logs"
    plan: list[tuple[str, list[str]]] = []
    for variant in args.variants.split(","):
        if variant == "daskscore":
            for mbs in args.mini_batch_size.split(","):
                plan.append(
                    (
                        f"daskscore-{mbs}",
                        [
                            "--variant",
                            "daskscore",
                            "--mini-batch-size",
                            mbs,
                            "--processes",
                            str(args.processes),
                        ],
                    )
                )
        elif variant == "ray":
            if not C.ray_available():
                print("ray not installed", flush=True)
                continue
            plan.append(
                (
                    "ray",
                    [
                        "--variant",
                        "ray",
                        "--ray-batch-size",
                        args.ray_batch_size,
                        "--ray-actor-cpus",
                        str(args.ray_actor_cpus),
                    ],
                )
            )
        else:
            plan.append((variant, ["--variant", variant]))
    rows = []
    for rep in range(args.repeat):
        for label, extra in plan:
            result = C.run_child(
                Path(__file__), common + extra, f"table-{label}-{rep + 1}", log_dir
            )
            result["repeat"] = rep + 1
            print(
                f"  {result.get('variant', label)} (run {rep + 1}): "
                f"{C.fmt(result.get('wall_s'))} s, "
                f"{C.fmt(result.get('rows_per_s'))} rows/s"
                f"{'  ERROR ' + result['error'] if 'error' in result else ''}",
                flush=True,
            )
            rows.append(result)
    summarize(rows)
    C.print_table(
        rows, COLUMNS, title=f"table: {n_rows:,} rows x 64 float32, every run"
    )
    best = best_rows(rows)
    C.print_table(
        best,
        BEST_COLUMNS,
        title=f"table: {n_rows:,} rows x 64 float32, best (median) of {args.repeat}",
    )
    print(f"results saved to {C.save_results('table', rows, {'best': best})}")
    return rows


BEST_COLUMNS = [
    ("variant", "variant"),
    ("runs", "runs"),
    ("wall", "end-to-end s"),
    ("rate", "rows/s (best)"),
    ("vs_ideal", "x ideal (single/2)"),
    ("cpu", "CPU s (all procs)"),
    ("cpu_vs_single", "CPU x single"),
    ("rss", "client peak RSS MiB"),
    ("load", "load avg"),
]


def best_rows(rows: list[dict]) -> list[dict]:
    """Min (median) per variant; the ratios compare minimums."""
    best = C.best_of(rows, ["wall_s", "cpu_s", "peak_rss_mib"])
    single = next((b for b in best if b["variant"] == "single"), None)
    for b in best:
        if "wall_s_min" not in b:
            continue
        b["wall"] = f"{b['wall_s_min']:.2f} ({b['wall_s_median']:.2f})"
        b["cpu"] = f"{b['cpu_s_min']:.1f} ({b['cpu_s_median']:.1f})"
        b["rss"] = b.get("peak_rss_mib_median")
        b["rate"] = b["rows"] / b["wall_s_min"] if b.get("rows") else None
        if single:
            b["vs_ideal"] = b["wall_s_min"] / (single["wall_s_min"] / 2)
            b["cpu_vs_single"] = b["cpu_s_min"] / single["cpu_s_min"]
    return best


if __name__ == "__main__":
    main()
