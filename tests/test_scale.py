"""Large plans are streamed: a FileDataset's plan holds no spec per mini-batch,
the client holds no record per mini-batch, and a chunked job that is stopped in
the middle resumes to every item exactly once (issue 12, "Scale").

A few thousand files keep these fast; bench/bench_scale.py measures 1M and 10M.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import psutil
import pytest

import daskscore as ds
from daskscore._protocol import MiniBatchSpec
from daskscore.engine.placement import iter_packs, pack_mini_batches
from daskscore.engine.records import RecordBook
from daskscore.output.store import StateStore
from daskscore.storage import files_clock, list_inputs

# names whose sorted order differs from a folder-by-folder walk
TRICKY = ["a-b/1.bin", "a/x.bin", "a/y/z.bin", "a0.bin", "a.bin", "b/.hidden", "top"]


def make_tree(root: Path, folders: int, per_folder: int) -> list[str]:
    paths = []
    for d in range(folders):
        for i in range(per_folder):
            p = root / f"d{d:02d}" / f"f{i:05d}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x" * (1 + i % 16))
            paths.append(str(p))
    for name in TRICKY:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"t")
        if not p.name.startswith("."):
            paths.append(str(p))
    return sorted(paths)


def live_specs() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, MiniBatchSpec))


def test_a_large_file_plan_holds_no_spec_until_asked(tmp_path):
    paths = make_tree(tmp_path / "in", 6, 500)
    before = live_specs()

    specs, fingerprint = ds.Dataset.File.from_files(str(tmp_path / "in")).plan(7)

    assert live_specs() == before, "planning must not make a spec per mini-batch"
    assert len(specs) == -(-len(paths) // 7)
    # the same files, in the same order, as the whole listing gives them
    assert [p for p, _, _ in list_inputs(str(tmp_path / "in"), None)] == paths
    flat = [p for s in specs for p in s.paths]
    assert flat == paths
    assert [s.index for s in specs] == list(range(len(specs)))
    assert specs[-1].items == (len(paths) % 7 or 7)
    assert specs[3] == specs[3] and specs[-1].index == len(specs) - 1
    assert live_specs() == before, "specs made on demand are not kept"
    assert fingerprint == ds.Dataset.File.from_files(str(tmp_path / "in")).plan(7)[1]


def test_packed_names_read_like_the_list_they_replace():
    from daskscore.io.files import PackedNames

    names = [f"f{i:05d}.bin" for i in range(5000)] + ["", "caf\u00e9", "x\udcff"]
    packed = PackedNames(names)
    assert len(packed) == len(names)
    assert packed[0:10] == names[0:10] and packed[4990:] == names[4990:]
    assert packed[5001] == "caf\u00e9" and packed[5002] == "x\udcff"  # not UTF-8
    assert packed[10:5] == [] and packed[:] == names
    with pytest.raises(IndexError):
        packed[len(names)]
    assert pickle.loads(pickle.dumps(packed))[:] == names


def test_planning_a_big_folder_imports_no_pyarrow(tmp_path):
    """A file job's client needs no pyarrow (~0.3 s to import) to plan a
    folder of 5,000 files (the names packed without Arrow)."""
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(5000):
        (folder / f"f{i:05d}.bin").write_bytes(b"x")
    code = (
        "import sys, daskscore as ds\n"
        f"plan = ds.Dataset.File.from_files(path={str(folder)!r}).plan(10)[0]\n"
        "assert len(plan) == 500 and plan[499].paths[-1].endswith('f04999.bin')\n"
        "print('pyarrow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_step_plan_of_several_inputs_numbers_them_on(tmp_path):
    make_tree(tmp_path / "one", 2, 30)
    make_tree(tmp_path / "two", 1, 25)
    config = ds.ParallelRunConfig(entry_script="s.py", mini_batch_size="10")
    (tmp_path / "s.py").write_text("def run(b):\n    return b\n")
    step = ds.ParallelRunStep(
        name="plan-two", parallel_run_config=config, output=str(tmp_path / "out"),
        inputs=[ds.Dataset.File.from_files(str(tmp_path / p)) for p in ("one", "two")],
    )
    specs, _ = step.plan()
    n_one = len(ds.Dataset.File.from_files(str(tmp_path / "one")).plan(10)[0])
    assert [s.index for s in specs] == list(range(len(specs)))
    assert {s.source for s in specs[:n_one]} == {0}
    assert {s.source for s in specs[n_one:]} == {1}
    assert specs.known_items() == sum(s.items for s in specs) == 60 + 6 + 25 + 6


def test_fingerprint_without_file_stats_sees_adds_removes_and_renames(tmp_path):
    make_tree(tmp_path / "in", 2, 20)
    folder = str(tmp_path / "in")

    def prints():
        dataset = ds.Dataset.File.from_files(folder)
        return dataset.plan(5)[1], dataset.content_fingerprint(5)

    first = prints()
    assert first == prints()
    (tmp_path / "in" / "d00" / "new.bin").write_bytes(b"n")
    added = prints()
    assert added[0] != first[0]
    os.rename(tmp_path / "in" / "d00" / "new.bin", tmp_path / "in" / "d00" / "z.bin")
    renamed = prints()
    assert renamed[0] not in (first[0], added[0])
    # rewritten in place: only the content fingerprint (a stat per file) sees
    # it, and the change time a resume looks at (even with the old mtime put back)
    target = tmp_path / "in" / "d01" / "f00003.bin"
    before = files_clock()  # the rename above is older
    assert not ds.Dataset.File.from_files(folder).changed_since(before)
    old_times = (target.stat().st_atime, target.stat().st_mtime)
    target.write_bytes(b"longer content")
    os.utime(target, (time.time() + 5, time.time() + 5))
    rewritten = prints()
    assert rewritten[0] == renamed[0] and rewritten[1] != renamed[1]
    os.utime(target, old_times)
    assert ds.Dataset.File.from_files(folder).changed_since(before)
    # daskscore's own output in the folder is not an input: it changes nothing
    after = files_clock()
    (tmp_path / "in" / "out" / ".daskscore").mkdir(parents=True)
    (tmp_path / "in" / "out" / ".daskscore" / "manifest.json").write_text("{}")
    (tmp_path / "in" / "out" / "parallel_run_step.txt").write_text("x\n")
    assert not ds.Dataset.File.from_files(folder).changed_since(after)
    with dask.config.set({"daskscore.plan.stat-files": True}):
        dataset = ds.Dataset.File.from_files(folder)
        assert dataset.content_fingerprint(5) == ""
        assert dataset.plan(5)[1] not in (rewritten[0], first[0])


def test_record_book_reads_like_the_dict_it_replaces():
    book = RecordBook(10)
    book[7] = {"index": 7, "has_output": True, "succeeded": 3}
    book[2] = {"index": 2, "failed_mini_batch": True, "succeeded": 0}
    book[7] = {"index": 7, "has_output": True, "succeeded": 4}  # replaced
    assert len(book) == 2 and 7 in book and 3 not in book and 11 not in book
    assert list(book) == sorted(book) == [2, 7]
    assert book[7]["succeeded"] == 4 and book.get(3) is None
    assert [r["index"] for r in book.in_order()] == [2, 7]
    assert list(book.in_order()) == list(book.in_order())  # read again
    assert list(book.with_output()) == [7] and book.failed() == 1
    with pytest.raises(KeyError):
        book[3]
    with pytest.raises(IndexError):
        book[10] = {"index": 10}
    book.close()


def test_record_book_keeps_where_each_part_is():
    book = RecordBook(5)
    book[0] = {"index": 0, "has_output": True}  # a part of its own (blob)
    assert book.part_of(0) is None
    book[1] = {"index": 1, "has_output": True, "part": ["seg-a.txt", 0, 10]}
    book[2] = {"index": 2, "has_output": True, "part": ["seg-b.txt", 0, 4]}
    book[3] = {"index": 3, "has_output": True, "part": ["seg-a.txt", 10, 7]}
    book[4] = {"index": 4, "live": True}  # a summary: no output yet
    assert [book.part_of(i) for i in range(5)] == [
        None, ("seg-a.txt", 0, 10), ("seg-b.txt", 0, 4), ("seg-a.txt", 10, 7), None]
    # a mini-batch scored again (a rerun) is found where its last record says
    book[1] = {"index": 1, "has_output": True, "part": ["seg-c.txt", 3, 2]}
    book[3] = {"index": 3, "has_output": False, "failed_mini_batch": True}
    assert book.part_of(1) == ("seg-c.txt", 3, 2) and book.part_of(3) is None
    book.close()


@pytest.mark.parametrize("n, workers", [(0, 2), (1, 2), (100, 2), (1000, 3), (77, 1)])
def test_packs_cut_from_an_iterator_are_the_packs_of_the_list(n, workers):
    todo = list(range(n))
    packs = list(iter_packs(iter(todo), n, workers, 64, 4))
    assert packs == pack_mini_batches(todo, workers, 64, 4)
    assert [i for p in packs for i in p] == todo


RESUME_SCRIPT = """
import os, time

def init():
    pass

def run(mini_batch):
    time.sleep(0.01)
    return [os.path.basename(p) for p in mini_batch]
"""


def _wait_for(predicate, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            continue
    return left


@pytest.mark.slow
def test_a_chunked_job_stopped_mid_way_resumes_to_every_item_exactly_once(tmp_path):
    """Packs of 2 mini-batches and at most a few tasks in flight: the job is
    stopped (SIGTERM) after some records, then the same command finishes it."""
    (tmp_path / "score.py").write_text(RESUME_SCRIPT)
    paths = make_tree(tmp_path / "data", 3, 700)
    cmd = [sys.executable, "-m", "daskscore.cli", "run", "--entry-script", "score.py",
           "--input", "data", "--output", "out", "--mini-batch-size", "5",
           "--process-count-per-node", "2", "--no-progress"]
    env = {**os.environ, "DASK_DASKSCORE__PACK__MAX_MINI_BATCHES": "2"}
    store = StateStore(str(tmp_path / "out"))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    children: list[psutil.Process] = []
    try:
        _wait_for(lambda: len(store.load_records()) >= 60,
                  "60 committed mini-batches")
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, (proc.returncode, out, err)
        committed = len(store.load_records())
        _wait_for(lambda: not _running(children), "the embedded workers to exit", 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        for p in _running(children):
            p.kill()
    n_batches = -(-len(paths) // 5)
    assert 60 <= committed < n_batches

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((tmp_path / "out" / "logs" / "job_report.json").read_text())
    assert report["resumed_mini_batches"] == committed
    assert report["processed_mini_batches"] == n_batches
    lines = (tmp_path / "out" / "parallel_run_step.txt").read_text().splitlines()
    assert lines == [os.path.basename(p) for p in paths], "each item once, in order"
    with open(tmp_path / "out" / "logs" / "processed_mini-batches.csv") as f:
        rows = list(csv.DictReader(f))
    ids = [int(r["mini_batch_id"]) for r in rows]
    assert ids == sorted(ids) and set(ids) == set(range(n_batches)), "id order"
    done = [r for r in rows if r["status"] == "RUN_DONE"]
    assert [int(r["mini_batch_id"]) for r in done] == list(range(n_batches))
    # the tries the stopped run left unfinished, reported once each
    assert all(r["status"] == "INTERRUPTED" for r in rows if r not in done)
