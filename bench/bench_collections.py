"""Collections benchmark: ``ds.map_partitions`` vs a hand-written Dask map_partitions.

On the table (bench/make_data.py: 8,000,000 rows x 64 float32 features in 32
Parquet files, the numpy MLP of ``scripts/mlp.py``), each variant in its own fresh
process, with 2 worker processes:

- ``dask``: ``LocalCluster(n_workers=2, threads_per_worker=1)``,
  ``dd.read_parquet(table) -> map_partitions(scripts/dask_global.score_partition)
  -> to_parquet``; the model is cached in a module global of each worker.
- ``daskscore``: the same cluster and pipeline with
  ``ds.map_partitions(ddf, cfg, arguments=["--model", ...], meta=...)`` on
  ``scripts/score_table.py`` (``init()`` loads the model in each worker's runner).
- ``step``: the step's own time, ``ParallelRunStep`` (bench_table.py's daskscore
  variant: 2 worker processes, ``append_row`` into ``scores.parquet``).

The clock of ``dask`` and ``daskscore`` runs from building the graph to the end of
``to_parquet`` on a started cluster (the cluster's start is reported apart); the
step's from ``step.run()`` (which starts and closes its own cluster) to its return.
Every variant must write 8,000,000 rows with the same score total.

    python bench/bench_collections.py --repeat 3
    python bench/bench_collections.py --data-dir DATA --variants dask,daskscore
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import _common as C
import bench_table

META_COLUMNS = {"id": "int64", "score": "float32"}


def _cluster():
    from distributed import Client, LocalCluster

    # the workers import scripts/dask_global.py (the baseline's module global);
    # spawned worker processes take this process's sys.path
    sys.path.insert(0, str(C.SCRIPTS))
    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    client.wait_for_workers(2)
    return cluster, client, time.perf_counter() - start


def _meta():
    import pandas as pd

    return pd.DataFrame({k: pd.Series([], dtype=v) for k, v in META_COLUMNS.items()})


def _result(variant: str, out: Path, wall: float, cluster_s: float) -> dict:
    parts = sorted(out.glob("*.parquet"))
    check = bench_table._check_output(parts)
    return {
        "variant": variant,
        "rows": check["out_rows"],
        "wall_s": round(wall, 2),
        "cluster_s": round(cluster_s, 2),
        "rows_per_s": check["out_rows"] / wall,
        **check,
    }


def child_dask(args: argparse.Namespace) -> dict:
    import dask.dataframe as dd

    out = Path(args.out_dir) / "collections-dask"
    shutil.rmtree(out, ignore_errors=True)
    model = str(Path(args.data_dir) / "mlp.npz")
    cluster, client, cluster_s = _cluster()
    try:
        import dask_global

        start = time.perf_counter()
        ddf = dd.read_parquet(str(Path(args.data_dir) / "table"))
        scored = ddf.map_partitions(dask_global.score_partition, model, meta=_meta())
        scored.to_parquet(str(out), write_index=False)
        wall = time.perf_counter() - start
    finally:
        client.close()
        cluster.close()
    return _result("dask map_partitions (module global)", out, wall, cluster_s)


def child_daskscore(args: argparse.Namespace) -> dict:
    import dask.dataframe as dd

    import daskscore as ds
    import daskscore.collections  # noqa: F401 - imports are not timed (ds.scorer's)

    out = Path(args.out_dir) / "collections-daskscore"
    shutil.rmtree(out, ignore_errors=True)
    model = str(Path(args.data_dir) / "mlp.npz")
    cluster, client, cluster_s = _cluster()
    try:
        start = time.perf_counter()
        cfg = ds.ParallelRunConfig(
            entry_script="score_table.py",
            source_directory=str(C.SCRIPTS),
            run_invocation_timeout=600,
        )
        ddf = dd.read_parquet(str(Path(args.data_dir) / "table"))
        with ds.scorer(cfg, arguments=["--model", model]) as score:
            score(ddf, meta=_meta()).to_parquet(str(out), write_index=False)
        wall = time.perf_counter() - start
    finally:
        client.close()
        cluster.close()
    return _result("ds.map_partitions", out, wall, cluster_s)


def child_step(args: argparse.Namespace) -> dict:
    args.mini_batch_size = args.step_mini_batch_size
    args.processes = 2
    result = bench_table.child_daskscore(args)
    result["variant"] = f"ParallelRunStep mbs={args.mini_batch_size}"
    return result


CHILDREN = {"dask": child_dask, "daskscore": child_daskscore, "step": child_step}

COLUMNS = [
    ("variant", "variant"),
    ("repeat", "run"),
    ("rows", "rows"),
    ("wall_s", "s"),
    ("cluster_s", "cluster start s"),
    ("rows_per_s", "rows/s"),
    ("cpu_s", "CPU s (all procs)"),
    ("load_1m", "load avg"),
    ("out_rows", "rows out"),
    ("score_sum", "score sum"),
]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = C.parser(__doc__, "dask,daskscore,step", 1)
    parser.add_argument("--step-mini-batch-size", default="64MB")
    args = C.parse_args(parser, argv)
    if args.child:
        C.emit(CHILDREN[args.variant](args))
        return []
    files, n_rows = bench_table._input_rows(Path(args.data_dir) / "table")
    if not files:
        sys.exit(f"no Parquet files in {args.data_dir}/table: run bench/make_data.py")
    print(
        f"table: {n_rows:,} rows in {len(files)} files; {os.cpu_count()} CPUs; "
        f"versions {C.versions()}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    common = [
        "--data-dir", args.data_dir, "--out-dir", args.out_dir,
        "--step-mini-batch-size", args.step_mini_batch_size,
    ]
    plan = [
        (f"collections-{v}", [*common, "--variant", v])
        for v in args.variants.split(",")
    ]
    rows = C.run_plan(
        Path(__file__), plan, args.repeat, Path(args.out_dir) / "logs",
        lambda r: f"{C.fmt(r.get('wall_s'))} s, {C.fmt(r.get('cpu_s'))} CPU s, "
        f"load {C.fmt(r.get('load_1m'))}",
    )
    C.print_table(rows, COLUMNS, title=f"collections: {n_rows:,} rows, every run")
    best = {}
    for r in rows:
        if "wall_s" in r:
            v = r["variant"]
            best[v] = min(best.get(v, r["wall_s"]), r["wall_s"])
    base = next((w for v, w in best.items() if v.startswith("dask ")), None)
    for variant, wall in best.items():
        ratio = f" ({wall / base:.3f}x the hand-written dask)" if base else ""
        print(f"best {variant}: {wall:.2f} s{ratio}")
    print(f"results saved to {C.save_results('collections', rows, {'best': best})}")
    return rows


if __name__ == "__main__":
    main()
