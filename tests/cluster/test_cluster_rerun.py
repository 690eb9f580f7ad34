"""``daskscore run --rerun-failed OUTPUT_DIR --scheduler ...`` on a real cluster.

A first run fails some mini-batches on purpose (the script or a flag file says
so); the cause is fixed and the run is repeated with
``--rerun-failed``: only the failed mini-batches are scored again (the script
leaves one token file per item it scores), and the collected output is complete
and in input order.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from cluster_procs import cli, make_files, read_report, write_script

pytest_plugins = ["cluster_procs"]

N = 8
BROKEN = {1, 5}  # item numbers that fail while the cause is not fixed

RERUN_SCRIPT = """
import os
import time

BROKEN_IN_SCRIPT = {broken}
TOKENS = os.environ["TOKEN_DIR"]
FLAG = os.environ.get("FAIL_FLAG", "")


def init():
    pass


def run(mini_batch):
    out = []
    for path in mini_batch:
        number = int(open(path).read())
        open(os.path.join(TOKENS, f"{{number}}-{{os.getpid()}}-{{time.time_ns()}}"),
             "w").close()
        broken = BROKEN_IN_SCRIPT or (FLAG and os.path.exists(FLAG))
        if broken and number % 4 == 1:
            raise RuntimeError(f"item {{number}} cannot be scored yet")
        out.append(f"{{os.path.basename(path)}} {{number * 2}}")
    return out
"""


def _scored(tokens: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in tokens.iterdir())


def _tries(output: Path) -> list[dict[str, str]]:
    with open(output / "logs" / "processed_mini-batches.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("fix", ["script", "flag-file"])
def test_rerun_failed_scores_only_the_failed_mini_batches(tmp_path, dask_cluster, fix):
    tracker = dask_cluster.tracker
    script = write_script(tmp_path / "src",
                          RERUN_SCRIPT.format(broken=fix == "script"))
    make_files(tmp_path / "in", N)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    flag = tmp_path / "broken.flag"
    if fix == "flag-file":
        flag.write_text("broken")
    out = tmp_path / "out"
    job = ["--entry-script", str(script), "--input", str(tmp_path / "in"),
           "--mini-batch-size", "1", "--run-max-try", "1", "--node-count", "2",
           "--process-count-per-node", "1", "--env", f"TOKEN_DIR={tokens}",
           "--env", f"FAIL_FLAG={flag}", "--no-progress"]
    first = cli(tracker, "run", *job, "--output", str(out),
                "--scheduler", dask_cluster.address)
    assert first.returncode == 0, (first.stdout, first.stderr)  # error_threshold=-1
    report = read_report(out)
    assert (report["failed_mini_batches"], report["failed_items"]) == (2, 2)
    assert _scored(tokens) == list(range(N))

    # fix the cause
    if fix == "script":
        script.write_text(RERUN_SCRIPT.format(broken=False))
        rerun_args: list[str] = []  # no job flags: the settings of the manifest
    else:  # the script is unchanged: only the outside cause was fixed
        flag.unlink()
        rerun_args = list(job)
    for token in tokens.iterdir():
        token.unlink()
    second = cli(tracker, "run", "--rerun-failed", str(out), *rerun_args,
                 "--scheduler", dask_cluster.address, "--no-progress")

    assert second.returncode == 0, (second.stdout, second.stderr)
    assert f"Completed: {N} of {N} items succeeded" in second.stdout
    assert _scored(tokens) == sorted(BROKEN), "only the failed ones are scored again"
    report = read_report(out)
    assert report["status"] == "Completed"
    assert (report["succeeded_items"], report["failed_items"]) == (N, 0)
    assert report["failed_mini_batches"] == 0
    assert report["resumed_mini_batches"] == N - len(BROKEN)
    lines = (out / "parallel_run_step.txt").read_text().splitlines()
    assert lines == [f"item-{i:04d}.txt {i * 2}" for i in range(N)]
    final = {int(r["mini_batch_id"]): r["status"] for r in _tries(out)}
    assert set(final) == set(range(N))
    assert set(final.values()) == {"RUN_DONE"}
    assert all(r["status"] == "RUN_DONE" for r in _tries(out)
               if int(r["mini_batch_id"]) not in BROKEN)
