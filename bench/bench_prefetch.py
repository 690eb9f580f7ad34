"""The gain of prefetching FileDataset mini-batches from blob storage.

Uploads N blobs (default 600 x 256 KB) to a local Azurite emulator and scores
them with a script that spends a fixed time per file (``--work-ms``, standing in
for a model), with ``mini_batch_size=10`` on 2 worker processes, twice: with the
next mini-batch prefetched while the current one is scored (the default) and with
``DASKSCORE_PREFETCH=0``. Prints the wall time of each and the gain.

Azurite must be installed (``make tests/node_modules/.installed``)::

    .venv/bin/python bench/bench_prefetch.py [--blobs 600] [--kb 256] [--work-ms 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

SCRIPT = '''
import os, time, sys
WORK_S = float(sys.argv[sys.argv.index("--work-ms") + 1]) / 1000

def init():
    pass

def run(mini_batch):
    out = []
    for path in mini_batch:
        with open(path, "rb") as f:
            n = len(f.read())
        time.sleep(WORK_S)          # the model's time per file
        out.append(f"{os.path.basename(path)}: {n}")
    return out
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=600)
    parser.add_argument("--kb", type=int, default=256)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from azurite import AzureContainer, start_azurite

    import daskscore as ds

    work = Path(tempfile.mkdtemp(prefix="bench-prefetch-"))
    emulator = start_azurite(in_memory=True)
    try:
        container = AzureContainer("bench", emulator)
        container.fs().mkdir("bench")
        payload = os.urandom(args.kb * 1024)
        container.upload({f"in/{i:06d}.bin": payload for i in range(args.blobs)})
        (work / "src").mkdir()
        (work / "src" / "score.py").write_text(SCRIPT)
        results: dict[str, list[float]] = {"prefetch": [], "no prefetch": []}
        for _ in range(args.repeat):
            for label, flag in (("prefetch", "1"), ("no prefetch", "0")):
                os.environ["DASKSCORE_PREFETCH"] = flag
                out = work / f"out-{flag}"
                shutil.rmtree(out, ignore_errors=True)
                files = ds.Dataset.File.from_files(
                    f"{container.url}/in/", storage_options=container.storage_options
                )
                config = ds.ParallelRunConfig(
                    entry_script="score.py", source_directory=str(work / "src"),
                    mini_batch_size="10", process_count_per_node=2,
                    run_invocation_timeout=600,
                )
                step = ds.ParallelRunStep(
                    name="bench-prefetch", parallel_run_config=config,
                    inputs=[files], output=str(out),
                    arguments=["--work-ms", str(args.work_ms)],
                )
                t0 = time.perf_counter()
                result = step.run()
                wall = time.perf_counter() - t0
                assert result.status == "Completed", result.reason
                assert result.succeeded_items == args.blobs
                results[label].append(wall)
                import csv
                with open(out / "logs" / "processed_mini-batches.csv") as f:
                    reads = [float(r["read_seconds"]) for r in csv.DictReader(f)]
                print(f"   mean read_seconds per mini-batch: "
                      f"{sum(reads) / len(reads):.3f}", flush=True)
                if os.environ.get("BENCH_DEBUG"):
                    print("   ", [round(x, 3) for x in reads])
                print(f"{label:12s} {wall:7.2f} s  ({args.blobs / wall:6.1f} files/s)",
                      flush=True)
        best = {k: min(v) for k, v in results.items()}
        ideal = args.blobs * args.work_ms / 1000 / 2
        print(f"\n{args.blobs} blobs x {args.kb} KB, {args.work_ms:g} ms of work per "
              f"file, mini_batch_size=10, 2 workers (work alone: {ideal:.1f} s)")
        for label, wall in best.items():
            print(f"  {label:12s} best {wall:6.2f} s")
        gain = best["no prefetch"] / best["prefetch"]
        print(f"  prefetch gain: {gain:.2f}x")
    finally:
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
