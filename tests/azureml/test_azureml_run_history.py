"""The run folder (``daskscore.output.runlog``): many writers, nothing lost."""

from __future__ import annotations

import io
import multiprocessing

import pytest

from daskscore.output.runlog import (
    REMOTE_PART_LINES,
    RunLog,
    read_events,
    run_summary,
    run_tree,
)
from daskscore.storage import url_to_fs


def _writer(folder: str, name: str, n: int) -> None:
    log = RunLog(folder, {}, name)
    for i in range(n):
        log.append("step-run", "metric", name="seen", value=f"{name}-{i}",
                   kind="scalar")
        log.append("step-run", "metric", name="fit", value={"who": name, "i": i},
                   kind="row")


def test_metrics_of_many_processes_are_merged_not_lost(tmp_path):
    folder = str(tmp_path / "run")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(folder, f"w{k}", 50)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    runs = run_summary(read_events(folder))
    seen = runs["step-run"]["metrics"]["seen"]
    assert sorted(seen) == sorted(f"w{k}-{i}" for k in range(4) for i in range(50))
    fit = runs["step-run"]["metrics"]["fit"]
    assert len(fit["who"]) == len(fit["i"]) == 200
    # each writer's own values stay in the order it logged them
    for k in range(4):
        assert [v for v in seen if v.startswith(f"w{k}-")] == [
            f"w{k}-{i}" for i in range(50)]


def test_uploads_children_tags_and_status(tmp_path):
    log = RunLog(str(tmp_path / "run"), {}, "agent-1")
    src = tmp_path / "model.pkl"
    src.write_bytes(b"weights")
    log.append("child", "start", parent="root", name="store-1")
    log.upload("child", "outputs/model.pkl", str(src))
    log.upload("root", "notes.txt", io.BytesIO(b"hello"))
    log.append("child", "tag", name="store", value="1")
    log.append("child", "status", value="Completed")
    log.append("other", "metric", name="x", value=1, kind="scalar")
    runs = run_summary(read_events(str(tmp_path / "run")))
    tree = run_tree(runs, "root")
    assert list(tree) == ["child", "root"]
    assert tree["child"] == {"metrics": {}, "tags": {"store": "1"},
                             "files": ["outputs/model.pkl"], "status": "Completed",
                             "parent": "root", "name": "store-1"}
    assert open(log.fetch("child", "outputs/model.pkl", str(tmp_path)), "rb"
                ).read() == b"weights"
    assert open(log.fetch("root", "notes.txt", str(tmp_path)), "rb").read() == b"hello"
    with pytest.raises(FileNotFoundError, match="was not uploaded"):
        log.fetch("root", "missing.pkl", str(tmp_path))
    with pytest.raises(ValueError, match="no '..'"):
        log.upload("root", "../escape.txt", str(src))


def test_a_remote_run_folder_keeps_every_event(tmp_path):
    """On storage without appends (here fsspec's memory filesystem) each writer
    writes its own file again, whole: nothing is lost either."""
    folder = f"memory://runlog-{tmp_path.name}/run"
    log = RunLog(folder, {}, "agent-1")
    n = REMOTE_PART_LINES * 2 + 5
    for i in range(n):
        log.append("r", "metric", name="loss", value=i, kind="scalar")
    log.upload("r", "m.bin", io.BytesIO(b"abc"))
    fs, root = url_to_fs(folder, {})
    assert len(fs.glob(f"{root}/events/*.jsonl")) == 3  # parts, none grows forever
    runs = run_summary(read_events(folder))
    assert runs["r"]["metrics"] == {"loss": list(range(n))}
    assert runs["r"]["files"] == ["m.bin"]
    local = log.fetch("r", "m.bin", str(tmp_path))
    assert open(local, "rb").read() == b"abc"
