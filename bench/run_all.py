"""Run the whole benchmark: make the data (if missing), then start-up, table, files.

    python bench/run_all.py                      # the recorded run (8M rows, 100k PNG)
    python bench/run_all.py --small              # a quick run on a small data set
    python bench/run_all.py --repeat 2 --mini-batch-size 4MB,16MB,64MB

Each part prints its own table; the raw figures are saved as JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common as C
import bench_files
import bench_startup
import bench_table
import make_data

SMALL = {"rows": 400_000, "files": 8, "pngs": 3_000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--small", action="store_true", help=f"use bench/data-small with {SMALL}"
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--mini-batch-size",
        default="4MB,16MB,64MB",
        help="daskscore mini_batch_size values for the table benchmark",
    )
    parser.add_argument("--parts", default="startup,table,files")
    args = parser.parse_args(argv)

    data_dir = args.data_dir or str(C.HERE / ("data-small" if args.small else "data"))
    sizes = SMALL if args.small else {"rows": 8_000_000, "files": 32, "pngs": 100_000}
    make_data.main(
        [
            "--data-dir",
            data_dir,
            "--rows",
            str(sizes["rows"]),
            "--files",
            str(sizes["files"]),
            "--pngs",
            str(sizes["pngs"]),
        ]
    )
    print(f"versions: {C.versions()}", flush=True)
    start = time.perf_counter()
    parts = args.parts.split(",")
    if "startup" in parts:
        bench_startup.main(
            ["--data-dir", data_dir, "--repeat", str(max(args.repeat, 3))]
        )
    if "table" in parts:
        bench_table.main(
            [
                "--data-dir",
                data_dir,
                "--repeat",
                str(args.repeat),
                "--mini-batch-size",
                args.mini_batch_size,
            ]
        )
    if "files" in parts:
        bench_files.main(["--data-dir", data_dir, "--repeat", str(args.repeat)])
    print(f"\nall done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
