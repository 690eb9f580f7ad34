"""The gain of prefetching FileDataset mini-batches from blob storage far away.

Uploads ``--blobs`` blobs of ``--kb`` KB (default 400 x 256 KB) to a local Azurite
emulator and scores them with ``scripts/sleep_files.py`` (reads each file, then
sleeps ``--work-ms``, standing in for a model), ``mini_batch_size=10`` on 2 worker
processes: with the next mini-batch prefetched while the current one is scored
(the default) and with ``DASK_DASKSCORE__PREFETCH=0`` (``daskscore.prefetch``),
alternately, ``--repeat`` times each.

Between the workers and Azurite runs ``tests/netproxy.py``, a process of its own,
standing for a storage account in a remote region: ``--latency`` before the first
byte of every response and on every new connection, and optionally a
``--bandwidth`` cap (bytes/s each way, all connections together). ``--direct``
leaves the proxy out. Every run is a fresh child process (a cold cluster, as a
user's job) with a fresh proxy, whose byte count is reported so both variants
are seen to move the same data.

Azurite must be installed (``make tests/node_modules/.installed``)::

    .venv/bin/python bench/bench_prefetch.py --latency 30ms --repeat 3
    .venv/bin/python bench/bench_prefetch.py --latency 50ms --bandwidth 40MB
    .venv/bin/python bench/bench_prefetch.py --direct
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common as C

TESTS = C.HERE.parent / "tests"
sys.path.insert(0, str(TESTS))

CONTAINER = "bench"
VARIANTS = {"prefetch": "1", "no prefetch": "0"}


def child(args: argparse.Namespace) -> dict:
    """One run: the step over the blobs behind ``--port``; returns its figures."""
    from azurite import ACCOUNT_KEY, ACCOUNT_NAME

    import daskscore as ds

    endpoint = f"http://127.0.0.1:{args.port}/{ACCOUNT_NAME}"
    options = {
        "connection_string": f"DefaultEndpointsProtocol=http;AccountName="
        f"{ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};BlobEndpoint={endpoint};"
    }
    out = Path(args.out_dir)
    shutil.rmtree(out, ignore_errors=True)
    files = ds.Dataset.File.from_files(
        f"abfs://{CONTAINER}/in/", storage_options=options
    )
    step = C.daskscore_step(
        "bench-prefetch",
        "sleep_files.py",
        files,
        str(out),
        "10",
        2,
        ["--work-ms", str(args.work_ms)],
    )
    start = time.perf_counter()
    result = step.run()
    wall = time.perf_counter() - start
    with open(out / "logs" / "processed_mini-batches.csv", newline="") as f:
        reads = [float(r["read_seconds"]) for r in csv.DictReader(f)]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "variant": args.variant,
        "status": result.status,
        "items": result.total_items,
        "succeeded": result.succeeded_items,
        "mini_batches": result.mini_batches,
        "wall_s": round(wall, 3),
        "read_s_mean": round(statistics.mean(reads), 4),
        "waited_reads": sum(r > 0.005 for r in reads),
    }


def _one_run(args, variant: str, azurite_port: int, work: Path) -> dict:
    from netproxy import start_netproxy_process

    proxy = None
    port = azurite_port
    if not args.direct:
        proxy = start_netproxy_process(
            f"127.0.0.1:{azurite_port}",
            latency=args.latency,
            bandwidth=args.bandwidth,
            stats_path=work / "proxy-stats.json",
        )
        port = proxy.port
    os.environ["DASK_DASKSCORE__PREFETCH"] = VARIANTS[variant]
    try:
        row = C.run_child(
            Path(__file__),
            [
                "--variant",
                variant,
                "--port",
                str(port),
                "--work-ms",
                str(args.work_ms),
                "--out-dir",
                str(work / "out"),
            ],
            label=f"prefetch-{VARIANTS[variant]}",
            log_dir=C.DEFAULT_OUT / "logs",
        )
    finally:
        os.environ.pop("DASK_DASKSCORE__PREFETCH", None)
        stats = proxy.stop() if proxy is not None else None
    if stats is not None:
        row["proxy_mb_down"] = round(stats["bytes_down"] / 1e6, 1)
        row["proxy_requests"] = stats["requests"]
        row["proxy_connections"] = stats["connections"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=400)
    parser.add_argument("--kb", type=int, default=256)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--latency", default="30ms", help="per response, e.g. 30ms")
    parser.add_argument("--bandwidth", default=None, help="bytes/s, e.g. 40MB")
    parser.add_argument("--direct", action="store_true", help="no proxy")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        C.emit(child(args))
        return 0

    from azurite import AzureContainer, start_azurite

    network = (
        "direct"
        if args.direct
        else f"netproxy latency {args.latency}, bandwidth {args.bandwidth or 'no cap'}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-prefetch-"))
    emulator = start_azurite(in_memory=True)
    rows = []
    try:
        container = AzureContainer(CONTAINER, emulator)
        container.fs().mkdir(CONTAINER)
        payload = os.urandom(args.kb * 1024)
        container.upload({f"in/{i:06d}.bin": payload for i in range(args.blobs)})
        for repeat in range(args.repeat):
            for variant in VARIANTS:
                row = _one_run(args, variant, emulator.port, work)
                if "error" not in row:
                    assert row["succeeded"] == args.blobs, row
                rows.append(row)
                print(
                    f"[{repeat + 1}/{args.repeat}] {variant:11s} "
                    f"{row.get('wall_s', row.get('error'))} s, read "
                    f"{row.get('read_s_mean', '-')} s per mini-batch, "
                    f"{row.get('proxy_mb_down', '-')} MB via proxy, "
                    f"load {row.get('load_1m')}",
                    flush=True,
                )
    finally:
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)

    summary = C.best_of(
        rows, ["wall_s", "read_s_mean", "waited_reads", "cpu_s", "proxy_mb_down"]
    )
    ideal = args.blobs * args.work_ms / 1000 / 2
    print(
        f"\n{args.blobs} blobs x {args.kb} KB, {args.work_ms:g} ms of work per file, "
        f"mini_batch_size=10, 2 workers, {network}; the work alone takes "
        f"{ideal:.1f} s on 2 workers\n"
    )
    C.print_table(
        summary,
        [
            ("variant", "variant"),
            ("runs", "runs"),
            ("wall_s_min", "wall s best"),
            ("wall_s_median", "wall s median"),
            ("read_s_mean_median", "read s per mini-batch (median)"),
            ("waited_reads_median", "mini-batches with read > 5 ms"),
            ("cpu_s_median", "CPU s (all procs)"),
            ("proxy_mb_down_median", "MB via proxy"),
            ("load", "load avg"),
        ],
    )
    by_variant = {s["variant"]: s for s in summary}
    if len(by_variant) == 2:
        on, off = by_variant["prefetch"], by_variant["no prefetch"]
        print(
            f"\nprefetch gain: {off['wall_s_min'] / on['wall_s_min']:.2f}x (best), "
            f"{off['wall_s_median'] / on['wall_s_median']:.2f}x (median)"
        )
    path = C.save_results(
        "prefetch",
        rows,
        {"settings": vars(args), "network": network, "versions": C.versions()},
    )
    print(f"raw results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
