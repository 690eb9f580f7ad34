"""A full local disk (a real tmpfs): no temporary file survives, recovery fits.

Each test mounts a small tmpfs under ``tmp_path`` (and unmounts it at the end),
so a write really fails with ``ENOSPC``. The end-to-end test runs the real
``daskscore`` command on an embedded cluster: the collected file does not fit,
the command fails with one line saying the disk is full, and once the disk has
grown to what a clean run needs (not a byte for what the failed attempt left
behind), the same command completes.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pytest

import daskscore
from daskscore.output.assemble import assemble_output
from daskscore.output.parts import PartWriter
from daskscore.output.store import StateStore, write_atomic
from daskscore.storage import describe_storage_error

# the daskscore this test imports, also in the processes it starts
REPO = Path(daskscore.__file__).resolve().parents[1]


# -- a small disk --------------------------------------------------------------------
def _mount(folder: Path, size_k: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here: the full-disk tests need a tmpfs")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(
            "mounting a tmpfs is not permitted here (mount said: "
            f"{proc.stderr.strip()}); the full-disk tests need root or "
            "CAP_SYS_ADMIN"
        )


def resize(folder: Path, size_k: int) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,size={size_k}k", str(folder)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def small_disk(tmp_path):
    """``make(size_k)``: a tmpfs of that size under ``tmp_path``, unmounted after."""
    mounted: list[Path] = []

    def make(size_k: int, name: str = "small") -> Path:
        folder = tmp_path / name
        _mount(folder, size_k)
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def temp_files(folder: Path) -> list[str]:
    return sorted(
        os.path.join(root, name)
        for root, _, files in os.walk(folder)
        for name in files
        if ".tmp-" in name
    )


def used_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


# -- the commit store on a full disk -------------------------------------------
def test_write_atomic_on_a_full_disk_removes_its_temp_file(small_disk):
    disk = small_disk(256)
    fs = fsspec.filesystem("file")

    with pytest.raises(OSError) as excinfo:
        write_atomic(fs, str(disk / "records" / "000000001.json"), b"x" * 1_000_000)

    assert excinfo.value.errno == errno.ENOSPC
    assert temp_files(disk) == []
    assert not (disk / "records" / "000000001.json").exists()
    # the space is free again: a write that fits succeeds
    write_atomic(fs, str(disk / "records" / "000000001.json"), b"y" * 100_000)
    assert (disk / "records" / "000000001.json").read_bytes() == b"y" * 100_000


def test_a_part_that_does_not_fit_is_cut_off_its_segment_file(small_disk):
    """A runner's part write that fills the disk: its bytes are cut off again
    (the space comes back, the file holds only whole parts) and the runner goes
    on in a new segment file, so that no part ever follows bytes of unknown
    length."""
    disk = small_disk(1024)
    store = StateStore(str(disk / "out"))
    store.makedirs()
    writer = PartWriter(store.parts_url, "txt", {}, enabled=True)
    has_output, first = writer.commit(0, ["a" * 100] * 100)
    assert has_output and first[1] == 0
    segment = disk / "out" / ".daskscore" / "parts" / first[0]

    with pytest.raises(OSError) as excinfo:
        writer.commit(1, ["b" * 1000] * 2_000)  # 2 MB on a 1 MB disk

    assert excinfo.value.errno == errno.ENOSPC
    assert segment.stat().st_size == first[2]
    has_output, third = writer.commit(2, ["c"])
    assert third[0] != first[0] and third[1:] == [0, 2]
    assert (segment.parent / third[0]).read_bytes() == b"c\n"
    writer.close()


def test_collecting_on_a_full_disk_says_so_and_cleans_up(small_disk):
    disk = small_disk(1024)
    store = StateStore(str(disk / "out"))
    store.makedirs()
    writer = PartWriter(store.parts_url, "csv", {}, enabled=True)
    rows = [{"id": i, "text": f"row {i:07d} " + "x" * 40} for i in range(2_000)]
    parts = {}
    for index in range(5):  # ~620 KB of parts: the collected copy cannot fit
        has_output, parts[index] = writer.commit(index, rows)
        assert has_output
    needed = sum(p.stat().st_size for p in (disk / "out/.daskscore/parts").iterdir())

    with pytest.raises(OSError) as excinfo:
        assemble_output(store, range(5), "csv", "scores.csv", locate=parts.get)

    assert temp_files(disk) == []
    assert not (disk / "out" / "scores.csv").exists()
    line = describe_storage_error(excinfo.value, str(disk / "out"))
    assert "\n" not in line
    assert "the disk is full" in line
    assert "errno 28" in line
    assert f"in {disk / 'out'}" in line
    assert f"scores.csv needs about {needed / 2**20:.1f} MB" in line
    assert "check the URL and storage_options" not in line

    # grown to what the collected file needs (no room for a leftover copy)
    resize(disk, math.ceil((used_bytes(disk) + needed) / 1024) + 64)
    url, n = assemble_output(store, range(5), "csv", "scores.csv", locate=parts.get)
    assert n == 5
    lines = Path(url).read_text().splitlines()
    assert lines[0] == "id,text" and len(lines) == 1 + 5 * 2_000
    assert temp_files(disk) == []


def test_leftover_temp_files_are_removed_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    store = StateStore(str(out))
    store.makedirs()
    hexes = [uuid.uuid4().hex for _ in range(6)]
    leftovers = [
        out / f".scores.csv.tmp-{hexes[0]}",
        out / ".daskscore" / f".tmp-{hexes[1]}",
        out / ".daskscore" / "parts" / f".tmp-{hexes[2]}",
        out / ".daskscore" / "records" / f".tmp-{hexes[3]}",
        out / "logs" / f".tmp-{hexes[4]}",
    ]
    kept = [
        out / ".daskscore" / "parts" / "000000001.csv",
        out / ".daskscore" / "records" / "000000001.json",
        out / ".daskscore" / "records" / "000000002.json.started",
        out / "scores.csv",
        # the script's own files are never touched, whatever their names
        out / "outputs" / f".tmp-{hexes[5]}",
        out / ".daskscore" / "parts" / ".tmp-not-ours",
    ]
    for path in leftovers + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")

    removed = store.remove_temp_files()

    assert sorted(removed) == sorted(str(p) for p in leftovers)
    assert [p for p in leftovers if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []


# -- the whole command: fail, grow the disk, succeed ---------------------------
SCRIPT = """\
def init():
    pass


def run(mini_batch):
    out = mini_batch[["id", "name"]].copy()
    out["pad"] = "p" * 24
    return out
"""

N_FILES, ROWS = 4, 25_000


def daskscore(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "daskscore.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_disk_full_then_grown_disk_recovers_with_a_clean_runs_space(
    tmp_path, small_disk
):
    (tmp_path / "score.py").write_text(SCRIPT)
    data = tmp_path / "data"
    data.mkdir()
    for f in range(N_FILES):
        with open(data / f"part-{f}.csv", "w") as out:
            out.write("id,name\n")
            for i in range(f * ROWS, (f + 1) * ROWS):
                out.write(f"{i},name-{i:07d}\n")
    disk = small_disk(7 * 1024)
    out = disk / "out"
    command = [
        "run", "--entry-script", "score.py", "--input", "data",
        "--output", str(out), "--append-row-file-name", "scores.csv",
        "--process-count-per-node", "2", "--no-progress",
    ]

    first = daskscore(command, tmp_path)

    assert first.returncode == 1, first.stdout + first.stderr
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1, first.stderr
    assert lines[0].startswith("daskscore: error: "), lines[0]
    assert "the disk is full" in lines[0] and f"in {out}" in lines[0], lines[0]
    assert "scores.csv needs about" in lines[0], lines[0]
    assert "check the URL" not in lines[0]
    assert temp_files(disk) == []
    parts = sorted((out / ".daskscore" / "parts").iterdir())
    # everything was scored and committed; only collecting failed
    records = StateStore(str(out)).load_records()
    assert sum(r["succeeded"] for r in records.values() if r["has_output"]) == (
        N_FILES * ROWS
    )
    # what runners killed mid-write would have left (a rerun removes it)
    for folder in ("parts", "records"):
        leftover = out / ".daskscore" / folder / f".tmp-{uuid.uuid4().hex}"
        leftover.write_bytes(b"t" * 700_000)

    # the disk grows to what a clean run needs: the parts, one collected copy, a
    # margin for the reports; not the space of any leftover
    clean = used_bytes(disk) - sum(os.path.getsize(p) for p in temp_files(disk))
    collected = sum(p.stat().st_size for p in parts)
    resize(disk, math.ceil((clean + collected) / 1024) + 1024)
    second = daskscore(command, tmp_path)

    assert second.returncode == 0, second.stdout + second.stderr
    assert f"Completed: {N_FILES * ROWS} of {N_FILES * ROWS} items" in second.stdout
    assert temp_files(disk) == []
    rows = (out / "scores.csv").read_text().splitlines()
    assert rows[0] == "id,name,pad"
    assert [int(r.split(",", 1)[0]) for r in rows[1:]] == list(range(N_FILES * ROWS))
