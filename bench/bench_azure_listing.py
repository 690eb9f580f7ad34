"""How long listing a large blob folder takes: daskscore.storage.list_files on Azurite.

Uploads N tiny blobs (default 100,000, in 100 sub-folders) to a local Azurite
emulator, then times:

* ``list_files(folder)``      one flat prefix listing (``list_blobs``, 5,000 per page)
* ``list_files(glob)``        the same listing, filtered by the glob
* ``fs.walk`` (fsspec)        a delimiter listing per folder, for comparison

Azurite must be installed (``make tests/node_modules/.installed``). Run::

    .venv/bin/python bench/bench_azure_listing.py [--blobs 100000] [--on-disk]

The emulator answers from one Node.js thread on this machine, so the figures are a
lower bound on what the client code costs; real Azure pages at the same 5,000 blobs
per request, with network latency per page instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from azurite import AzureContainer, start_azurite  # noqa: E402

from daskscore import storage  # noqa: E402


def _timed(label: str, func):
    started = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - started
    print(f"{label:<44} {elapsed:8.2f} s   {len(result):>8,} files", flush=True)
    return result, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--on-disk", action="store_true",
                        help="persist blobs in a data folder (default: in memory)")
    parser.add_argument("--skip-walk", action="store_true")
    args = parser.parse_args()

    azurite = start_azurite(in_memory=not args.on_disk)
    try:
        azurite.service_client().create_container("bench")
        container = AzureContainer(name="bench", azurite=azurite)
        names = [
            f"images/{i % args.folders:03d}/{i:07d}.png" for i in range(args.blobs)
        ]
        started = time.perf_counter()
        chunk = 5_000
        for at in range(0, len(names), chunk):
            container.upload({n: b"x" for n in names[at:at + chunk]})
        upload_s = time.perf_counter() - started
        print(f"uploaded {len(names):,} blobs in {upload_s:.1f} s "
              f"({len(names) / upload_s:,.0f}/s)", flush=True)

        so = container.storage_options
        folder = "abfs://bench/images"
        listed, _ = _timed("list_files(folder)  [flat prefix listing]",
                           lambda: storage.list_files(folder, so))
        assert listed == sorted(f"abfs://bench/{n}" for n in names)
        _timed("list_files(folder/*/*.png)  [glob]",
               lambda: storage.list_files(f"{folder}/*/*.png", so))
        _timed("list_files(folder/007/*.png)  [one folder]",
               lambda: storage.list_files(f"{folder}/007/*.png", so))
        if not args.skip_walk:
            fs, path = storage.url_to_fs(folder, so)

            def walk():
                fs.invalidate_cache()
                return [f"{root}/{f}" for root, _, files in fs.walk(path)
                        for f in files]

            _timed("fsspec fs.walk(folder)  [per-folder listings]", walk)
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
