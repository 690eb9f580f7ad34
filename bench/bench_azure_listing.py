"""How long listing a large blob folder takes: daskscore.storage.list_files on Azurite.

Uploads N tiny blobs (default 100,000, in 100 sub-folders) to a local Azurite
emulator, then times:

* ``list_files(folder)``           daskscore: one flat prefix listing, page XML read
                                   directly (name, size, time, etag)
* ``list_files(folder/*/*.png)``   the same listing, filtered by the glob
* ``list_blob_names`` (SDK)        the emulator's floor: same pages, names only
* ``fs.find`` (adlfs)              flat listing through the SDK's BlobProperties
* ``fs.walk`` (fsspec)             a delimiter listing per folder

Azurite must be installed (``make tests/node_modules/.installed``). Run::

    .venv/bin/python bench/bench_azure_listing.py [--blobs 100000]
        [--data-dir bench/data/azurite]   # keep the blobs for the next run

The emulator answers from one Node.js thread on this machine (and lists large
containers slowly: see the ``list_blob_names`` floor), so wall times mostly
measure it; the "client CPU" column is what daskscore itself costs. Real Azure
serves the same 5,000-blob pages, with a network round trip per page instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from azurite import AzureContainer, start_azurite  # noqa: E402

from daskscore import storage  # noqa: E402


def _timed(label: str, func) -> float:
    """Run ``func`` and print wall seconds and this process's CPU seconds.

    The CPU seconds are the client's own cost (parsing pages, building the list),
    independent of how busy the emulator or the machine is.
    """
    started, cpu = time.perf_counter(), time.process_time()
    result = func()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    print(
        f"{label:<40} {elapsed:8.2f} s wall {cpu:8.2f} s client CPU "
        f"{len(result):>9,} files",
        flush=True,
    )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="emulator data folder, kept (default: in memory)",
    )
    parser.add_argument(
        "--skip-slow",
        action="store_true",
        help="skip the adlfs find and fsspec walk comparisons",
    )
    args = parser.parse_args()

    azurite = start_azurite(in_memory=args.data_dir is None, location=args.data_dir)
    try:
        service = azurite.service_client()
        if not service.get_container_client("bench").exists():
            service.create_container("bench")
        client = service.get_container_client("bench")
        container = AzureContainer(name="bench", azurite=azurite)
        names = [
            f"images/{i % args.folders:03d}/{i:07d}.png" for i in range(args.blobs)
        ]
        have = set(client.list_blob_names(name_starts_with="images/"))
        todo = [n for n in names if n not in have]
        if todo:
            started = time.perf_counter()
            for at in range(0, len(todo), 5_000):
                container.upload({n: b"x" for n in todo[at : at + 5_000]})
            upload_s = time.perf_counter() - started
            print(
                f"uploaded {len(todo):,} blobs in {upload_s:.1f} s "
                f"({len(todo) / upload_s:,.0f}/s)",
                flush=True,
            )
        print(
            f"{os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} before timing",
            flush=True,
        )

        so = container.storage_options
        folder = "abfs://bench/images"
        _timed("daskscore list_files(folder)", lambda: storage.list_files(folder, so))
        _timed(
            "daskscore list_files(folder/*/*.png)",
            lambda: storage.list_files(f"{folder}/*/*.png", so),
        )
        _timed(
            "daskscore list_files(folder/007/*.png)",
            lambda: storage.list_files(f"{folder}/007/*.png", so),
        )
        _timed(
            "SDK list_blob_names (emulator floor)",
            lambda: list(client.list_blob_names(name_starts_with="images/")),
        )
        if not args.skip_slow:
            fs, path = storage.url_to_fs(folder, so)
            _timed("adlfs fs.find(folder)", lambda: fs.find(path))

            def walk():
                fs.invalidate_cache()
                return [f for _, _, files in fs.walk(path) for f in files]

            _timed("fsspec fs.walk(folder)", walk)
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
