"""Generate the benchmark inputs under bench/data/ (git-ignored).

- ``table/``: ``--rows`` rows (default 8,000,000) of 64 float32 features ``f00..f63``
  plus an int64 ``id`` column, in ``--files`` Parquet files (default 32), with
  ``--row-group`` rows per row group (default 65,536).
- ``png/``: ``--pngs`` (default 100,000) 28x28 grayscale PNG files.
- ``mlp.npz``: the weights of the small numpy MLP (64 -> 128 -> 32 -> 1) the entry
  scripts load in ``init()``.

Idempotent: each part writes a ``<folder>.complete`` marker (beside the folder, so
the inputs hold only data) with its parameters and is skipped when it matches. Use
``--data-dir`` to keep a small development set apart from the full one, e.g.::

    python bench/make_data.py --data-dir bench/data-small \
        --rows 400000 --files 8 --pngs 3000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
N_FEATURES = 64
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]


def _marker(folder: Path) -> Path:
    # Beside the folder, not in it: the folder is a benchmark input, every file counts.
    return folder.with_name(folder.name + ".complete")


def _done(folder: Path, params: dict) -> bool:
    marker = _marker(folder)
    return (
        folder.is_dir() and marker.exists() and json.loads(marker.read_text()) == params
    )


def _mark(folder: Path, params: dict) -> None:
    _marker(folder).write_text(json.dumps(params, sort_keys=True))


def _fresh(folder: Path) -> None:
    _marker(folder).unlink(missing_ok=True)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def make_model(data_dir: Path, seed: int = 7) -> Path:
    """Fixed random weights for a 64 -> 128 -> 32 -> 1 MLP (He-style scaling)."""
    path = data_dir / "mlp.npz"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    sizes = [N_FEATURES, 128, 32, 1]
    weights = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        weights[f"w{i}"] = (
            rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        ).astype(np.float32)
        weights[f"b{i}"] = (rng.standard_normal(n_out) * 0.01).astype(np.float32)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / "mlp.tmp.npz"
    np.savez(tmp, **weights)
    os.replace(tmp, path)
    return path


def make_table(
    data_dir: Path, rows: int, files: int, row_group: int, seed: int = 1
) -> Path:
    folder = data_dir / "table"
    params = {"rows": rows, "files": files, "row_group": row_group, "seed": seed}
    if _done(folder, params):
        print(f"table: {folder} already has {rows:,} rows in {files} files, skipped")
        return folder
    _fresh(folder)
    start = time.perf_counter()
    schema = pa.schema(
        [("id", pa.int64())] + [(name, pa.float32()) for name in FEATURES]
    )
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for i in range(files):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        rng = np.random.default_rng([seed, i])
        feats = rng.standard_normal((hi - lo, N_FEATURES), dtype=np.float32)
        columns = [pa.array(np.arange(lo, hi, dtype=np.int64))]
        columns += [pa.array(feats[:, j]) for j in range(N_FEATURES)]
        table = pa.Table.from_arrays(columns, schema=schema)
        pq.write_table(
            table,
            folder / f"part-{i:03d}.parquet",
            row_group_size=row_group,
            use_dictionary=False,  # random floats: a dictionary only adds bytes
        )
        print(f"\rtable: {i + 1}/{files} files", end="", flush=True)
    _mark(folder, params)
    size = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    print(
        f"\rtable: {rows:,} rows x {N_FEATURES} float32 in {files} files "
        f"({size / 2**20:,.0f} MiB) in {time.perf_counter() - start:.1f} s"
    )
    return folder


def make_pngs(data_dir: Path, count: int, seed: int = 2) -> Path:
    from PIL import Image

    folder = data_dir / "png"
    params = {"pngs": count, "seed": seed, "shape": [28, 28]}
    if _done(folder, params):
        print(f"png: {folder} already has {count:,} files, skipped")
        return folder
    _fresh(folder)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    # Digit-like images: a dark background with a bright random blob, so the
    # files are small (~200-400 bytes) like MNIST's.
    yy, xx = np.mgrid[0:28, 0:28]
    chunk = 1000
    for base in range(0, count, chunk):
        n = min(chunk, count - base)
        cy = rng.uniform(8, 20, n)
        cx = rng.uniform(8, 20, n)
        radius = rng.uniform(3, 8, n)
        for k in range(n):
            dist = np.hypot(yy - cy[k], xx - cx[k])
            img = np.clip(255 * (1.2 - dist / radius[k]), 0, 255).astype(np.uint8)
            Image.fromarray(img, mode="L").save(folder / f"img-{base + k:06d}.png")
        print(f"\rpng: {base + n:,}/{count:,}", end="", flush=True)
    _mark(folder, params)
    print(f"\rpng: {count:,} files 28x28 in {time.perf_counter() - start:.1f} s")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE / "data"))
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--row-group", type=int, default=65_536)
    parser.add_argument("--pngs", type=int, default=100_000)
    parser.add_argument(
        "--only", choices=["table", "png"], help="generate one part only"
    )
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)
    make_model(data_dir)
    if args.only in (None, "table"):
        make_table(data_dir, args.rows, args.files, args.row_group)
    if args.only in (None, "png"):
        make_pngs(data_dir, args.pngs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
