"""Scale benchmark: planning and running FileDatasets of 1M and 10M tiny files.

Makes the trees itself under ``--data-dir`` (default ``bench/data/scale``,
git-ignored): ``files-<N>/d000 .. d<F-1>/f0000000.bin ...``, 10,000 files per
folder, each 1-16 bytes (``1 + i % 16``). A ``<tree>.complete`` marker makes it
idempotent. 10M files take ~40 GB of 4 KiB blocks and 10M inodes: check
``df -i`` first, and remove the tree with ``--remove`` when done.

Variants, each in a fresh child process (client peak RSS is ``VmHWM``):

- ``plan``: ``FileDataset(folder).plan(mini_batch_size)``: listing, specs and
  the fingerprint, no cluster;
- ``daskscore``: ``ParallelRunStep`` on ``scripts/trivial.py`` (``run()``
  returns its input), ``mini_batch_size`` files per mini-batch, 2 worker
  processes, ``append_row`` into ``parallel_run_step.txt``; end to end
  (``step.run()`` from call to return);
- ``synthetic``: no files and no cluster: the client's own structures for
  ``--files`` files (a FilePlan of a generated listing, every spec made once in
  packs, a RecordBook with one record per mini-batch, the summary and
  ``processed_mini-batches.csv`` streamed from it), for sizes whose trees take
  too long to make;
- ``blob-plan``, ``blob-daskscore``: ``plan`` and ``daskscore`` on ``--files``
  tiny blobs uploaded to an in-memory Azurite (``tests/azurite.py``) first;
- ``loop``: a plain single-process loop doing the same: list the folder
  (``os.scandir``), sorted, ``mini_batch_size`` files at a time, one line per
  file into one text file.

    python bench/bench_scale.py --files 1000000 --variants plan,daskscore,loop
    python bench/bench_scale.py --files 10000000 --variants plan
    python bench/bench_scale.py --files 10000000 --variants synthetic
    python bench/bench_scale.py --files 100000 --variants blob-plan,blob-daskscore
    python bench/bench_scale.py --files 10000000 --remove
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import _common as C

PER_FOLDER = 10_000


def tree_path(args: argparse.Namespace) -> Path:
    return Path(args.data_dir) / f"files-{args.files}"


def make_tree(root: Path, n: int) -> None:
    """``n`` files of 1-16 bytes, 10,000 per folder; idempotent."""
    marker = root.with_name(root.name + ".complete")
    if marker.exists():
        return
    start = time.perf_counter()
    payload = bytes(range(65, 65 + 16))
    for d in range((n + PER_FOLDER - 1) // PER_FOLDER):
        folder = root / f"d{d:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(d * PER_FOLDER, min(n, (d + 1) * PER_FOLDER)):
            fd = os.open(folder / f"f{i:08d}.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, payload[: 1 + i % 16])
            os.close(fd)
    marker.write_text(f"{n}\n")
    print(f"made {n:,} files in {root} in {time.perf_counter() - start:.1f} s")


# -- children ---------------------------------------------------------------------
def child_plan(args: argparse.Namespace) -> dict:
    import daskscore as ds

    dataset = ds.Dataset.File.from_files(path=str(tree_path(args)))
    start = time.perf_counter()
    specs, fingerprint = dataset.plan(args.mini_batch_size)
    seconds = time.perf_counter() - start
    n = len(specs)
    return {"variant": "plan", "plan_s": round(seconds, 2), "mini_batches": n}


def child_daskscore(args: argparse.Namespace) -> dict:
    import daskscore as ds

    out = Path(args.out_dir) / f"scale-{args.files}"
    shutil.rmtree(out, ignore_errors=True)
    dataset = ds.Dataset.File.from_files(path=str(tree_path(args)))
    step = C.daskscore_step(
        "bench-scale", "trivial.py", dataset, str(out), str(args.mini_batch_size),
        2, [], run_invocation_timeout=600,
    )
    start = time.perf_counter()
    result = step.run()
    seconds = time.perf_counter() - start
    lines = _count_lines(out / "parallel_run_step.txt")
    row = {
        "variant": "daskscore",
        "end_to_end_s": round(seconds, 2),
        "mini_batches": result.mini_batches,
        "status": result.status,
        "lines_ok": lines == args.files,
        "lines": lines,
        "succeeded_items": result.succeeded_items,
        "failed_items": result.failed_items,
    }
    # a failed check keeps its output folder (logs/, .daskscore/) to look into
    if not args.keep_output and row["lines_ok"]:
        shutil.rmtree(out, ignore_errors=True)
    return row


def child_loop(args: argparse.Namespace) -> dict:
    out = Path(args.out_dir) / f"scale-loop-{args.files}.txt"
    start = time.perf_counter()
    paths = []
    todo = [str(tree_path(args))]
    while todo:
        for entry in os.scandir(todo.pop()):
            (todo if entry.is_dir() else paths).append(entry.path)
    paths.sort()
    size = int(args.mini_batch_size)
    with open(out, "w") as f:
        for i in range(0, len(paths), size):
            f.writelines(p + "\n" for p in paths[i : i + size])
    seconds = time.perf_counter() - start
    ok = _count_lines(out) == args.files
    out.unlink()
    return {"variant": "loop", "end_to_end_s": round(seconds, 2), "lines_ok": ok}


def child_synthetic(args: argparse.Namespace) -> dict:
    """The client's own structures for ``--files`` files without the files:
    a FilePlan from a generated listing (1,000 folders), every spec made once
    in packs (as the scoring loop submits them), a RecordBook of one trivial
    record per mini-batch, and the summary and reports streamed from it."""
    import tempfile

    import fsspec

    from daskscore.engine.placement import iter_packs
    from daskscore.engine.records import RecordBook
    from daskscore.engine.summary import job_summary
    from daskscore.io.files import plan_file_runs
    from daskscore.output.reports import write_reports

    folders = max(1, args.files // PER_FOLDER)

    def runs():
        for d in range(folders):
            base = d * PER_FOLDER
            names = [f"f{i:08d}.bin" for i in range(base, base + PER_FOLDER)]
            yield f"/data/synthetic/d{d:04d}/", names, str(d)

    t0 = time.perf_counter()
    plan, _ = plan_file_runs(runs(), args.mini_batch_size)
    t_plan = time.perf_counter() - t0
    book = RecordBook(len(plan))
    for pack in iter_packs(iter(plan), len(plan), 2, 64, 4):
        for spec in pack:
            try_ = {"try": 1, "worker": "worker-0", "items": spec.items,
                    "succeeded": spec.items, "failed": 0, "elapsed_seconds": 0.001,
                    "run_seconds": 0.0005, "read_seconds": 0.0001,
                    "peak_rss_mib": 50.0, "status": "RUN_DONE", "error": ""}
            book[spec.index] = {
                "index": spec.index, "input": spec.describe(), "items": spec.items,
                "succeeded": spec.items, "failed": 0, "status": "RUN_DONE",
                "failed_mini_batch": False, "has_output": True,
                "output_rows": spec.items, "tries": [try_],
            }
    t_score = time.perf_counter() - t0 - t_plan
    summary = job_summary(book.in_order(), len(plan), "", 1.0)
    with tempfile.TemporaryDirectory() as logs:
        full = {**summary, "step": "synthetic", "warnings": []}
        write_reports(fsspec.filesystem("file"), logs, full, book.in_order(), [])
        csv_mib = os.path.getsize(f"{logs}/processed_mini-batches.csv") / 2**20
    t_report = time.perf_counter() - t0 - t_plan - t_score
    return {
        "variant": "synthetic", "mini_batches": len(plan),
        "plan_s": round(t_plan, 2), "specs_records_s": round(t_score, 2),
        "reports_s": round(t_report, 2), "csv_mib": round(csv_mib, 1),
        "lines_ok": summary["succeeded_items"] == args.files,
    }


def _blob_dataset(args: argparse.Namespace):
    import daskscore as ds

    options = {"connection_string": os.environ["BENCH_SCALE_CONNECTION"]}
    return ds.Dataset.File.from_files(
        path="abfs://scale/files/", storage_options=options
    )


def child_blob_plan(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    specs, _ = _blob_dataset(args).plan(args.mini_batch_size)
    seconds = time.perf_counter() - start
    return {
        "variant": "blob-plan", "plan_s": round(seconds, 2),
        "mini_batches": len(specs),
    }


def child_blob_daskscore(args: argparse.Namespace) -> dict:
    out = Path(args.out_dir) / f"scale-blob-{args.files}"
    shutil.rmtree(out, ignore_errors=True)
    step = C.daskscore_step(
        "bench-scale", "trivial.py", _blob_dataset(args), str(out),
        str(args.mini_batch_size), 2, [], run_invocation_timeout=600,
    )
    start = time.perf_counter()
    result = step.run()
    seconds = time.perf_counter() - start
    lines = _count_lines(out / "parallel_run_step.txt")
    shutil.rmtree(out, ignore_errors=True)
    return {
        "variant": "blob-daskscore", "end_to_end_s": round(seconds, 2),
        "mini_batches": result.mini_batches, "lines_ok": lines == args.files,
    }


def blob_rows(args: argparse.Namespace, common: list[str]) -> list[dict]:
    """Upload ``--files`` tiny blobs to Azurite, then plan and run on them."""
    sys.path.insert(0, str(C.HERE.parent / "tests"))
    from azurite import start_azurite

    azurite = start_azurite(in_memory=True)
    try:
        import adlfs

        fs = adlfs.AzureBlobFileSystem(connection_string=azurite.connection_string)
        fs.mkdir("scale")
        start = time.perf_counter()
        for d in range((args.files + PER_FOLDER - 1) // PER_FOLDER):
            stop = min(args.files, (d + 1) * PER_FOLDER)
            fs.pipe({
                f"scale/files/d{d:04d}/f{i:08d}.bin": b"x" * (1 + i % 16)
                for i in range(d * PER_FOLDER, stop)
            })
        print(f"uploaded {args.files:,} blobs in {time.perf_counter() - start:.1f} s")
        os.environ["BENCH_SCALE_CONNECTION"] = azurite.connection_string
        rows = []
        for variant in args.variants.split(","):
            row = C.run_child(
                Path(__file__), [f"--variant={variant}", *common],
                f"scale-{variant}-{args.files}", Path(args.out_dir) / "logs",
            )
            row.setdefault("variant", variant)
            row["files"] = args.files
            rows.append(row)
        return rows
    finally:
        os.environ.pop("BENCH_SCALE_CONNECTION", None)
        azurite.stop()


def _count_lines(path: Path) -> int:
    if not path.exists():
        return -1
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


CHILDREN = {
    "plan": child_plan,
    "daskscore": child_daskscore,
    "loop": child_loop,
    "synthetic": child_synthetic,
    "blob-plan": child_blob_plan,
    "blob-daskscore": child_blob_daskscore,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--mini-batch-size", type=int, default=100)
    parser.add_argument("--variants", default="plan,daskscore,loop")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--data-dir", default=str(C.DEFAULT_DATA / "scale"))
    parser.add_argument("--out-dir", default=str(C.DEFAULT_OUT))
    parser.add_argument("--keep-output", action="store_true")
    parser.add_argument("--remove", action="store_true", help="delete the tree")
    args = parser.parse_args()
    if args.child:
        C.emit(CHILDREN[args.variant](args))
        return
    root = tree_path(args)
    if args.remove:
        shutil.rmtree(root, ignore_errors=True)
        root.with_name(root.name + ".complete").unlink(missing_ok=True)
        print(f"removed {root}")
        return
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    common = [
        f"--files={args.files}", f"--mini-batch-size={args.mini_batch_size}",
        f"--data-dir={args.data_dir}", f"--out-dir={args.out_dir}",
    ] + (["--keep-output"] if args.keep_output else [])
    blob = args.variants.startswith("blob")
    if args.variants != "synthetic" and not blob:
        make_tree(root, args.files)
    rows = blob_rows(args, common) if blob else []
    for _ in range(0 if blob else args.repeat):
        for variant in args.variants.split(","):
            row = C.run_child(
                Path(__file__), [f"--variant={variant}", *common],
                f"scale-{variant}-{args.files}", Path(args.out_dir) / "logs",
            )
            row.setdefault("variant", variant)
            row["files"] = args.files
            rows.append(row)
    C.print_table(
        rows,
        [
            ("variant", "variant"), ("files", "files"),
            ("mini_batches", "mini-batches"), ("plan_s", "plan s"),
            ("end_to_end_s", "end-to-end s"), ("specs_records_s", "specs+records s"),
            ("reports_s", "reports s"), ("peak_rss_mib", "client peak RSS MiB"),
            ("cpu_s", "CPU s (all procs)"), ("lines_ok", "output ok"),
            ("load_1m", "load avg"),
        ],
        title=f"{args.files:,} files, mini_batch_size={args.mini_batch_size}",
    )
    print("uptime:", os.popen("uptime").read().strip())
    C.save_results("scale", rows)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
