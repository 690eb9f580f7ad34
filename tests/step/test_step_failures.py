"""Failures end to end: thresholds, hung and crashing run(), bad input, bad scripts.

Real worker processes, real files in ``tmp_path``, real entry scripts.
"""

from __future__ import annotations

import os
import threading
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import (
    N_WORKERS,
    STOP_GATE_PRELUDE,
    StopGate,
    alive,
    counts,
    file_names,
    make_files,
    make_step,
    markers,
    read_lines,
    read_report,
    records_committed,
    tries_by_mini_batch,
    write_script,
)

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(180)

# Fails (raises) on every file whose content is "bad"; the rest are scored.
BAD_CONTENT_SCRIPT = """
import os
import time

def init():
    pass

def run(mini_batch):
    if os.environ.get("RUN_DIR"):  # one marker per run() call
        open(os.path.join(os.environ["RUN_DIR"], os.urandom(8).hex()), "w").close()
    out = []
    for path in mini_batch:
        with open(path) as f:
            if f.read().strip() == "bad":
                raise ValueError(f"bad input {os.path.basename(path)}")
        out.append(os.path.basename(path))
    time.sleep(float(os.environ.get("SLEEP_S", "0")))
    return out
"""


# Fails on "bad" files at once; every other mini-batch waits at the stop gate
# (helpers.StopGate) until the job has stopped starting work.
GATED_BAD_CONTENT_SCRIPT = STOP_GATE_PRELUDE + """

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    for path in mini_batch:
        with open(path) as f:
            if f.read().strip() == "bad":
                raise ValueError(f"bad input {os.path.basename(path)}")
    hold(names)
    return names
"""


def bad_files(folder, n, bad):
    """``n`` files; those whose index is in ``bad`` hold "bad"."""
    return make_files(folder, n, lambda i: "bad\n" if i in bad else f"{i}\n")


# -- thresholds ----------------------------------------------------------------------
def test_error_threshold_exceeded_fails_the_job_and_cancels_the_rest(tmp_path,
                                                                      shared_client):
    """Mini-batch 0 fails; the others wait at a gate until the job has stopped
    starting work: then only what was in flight is scored (a job that counted
    failures only when a whole pack of mini-batches returned would never stop,
    and would hold its gated mini-batches until pytest's timeout)."""
    script = write_script(tmp_path / "src", GATED_BAD_CONTENT_SCRIPT)
    bad_files(tmp_path / "in", 400, bad={0})
    out = tmp_path / "out"
    with StopGate(shared_client, out, tmp_path) as gate:
        result = make_step(
            script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
            mini_batch_size="1", error_threshold=0, run_max_try=1,
            environment_variables=gate.env,
        ).run(client=shared_client)

    assert result.status == "Failed"
    assert "error_threshold" in result.reason
    assert result.mini_batches == 400
    tries = tries_by_mini_batch(out)
    assert tries[0][0]["status"] == "RUN_EXCEPTION"
    # at most one mini-batch per worker was in flight when the job stopped; those
    # were scored, and nothing else
    assert gate.in_flight is not None and len(gate.in_flight) <= N_WORKERS
    assert gate.scored() == gate.in_flight
    assert sorted(tries) == sorted([0] + [int(n[5:9]) for n in gate.in_flight])
    report = read_report(out)
    assert report["status"] == "Failed"
    assert report["processed_mini_batches"] == len(tries) < report["mini_batches"]
    # what was committed before the stop stays in the collected file, in order
    done = sorted(i for i, rows in tries.items() if rows[-1]["status"] == "RUN_DONE")
    assert done == sorted(int(n[5:9]) for n in gate.in_flight)
    assert result.succeeded_items == len(done)
    names = file_names(400)
    assert read_lines(out / "parallel_run_step.txt") == [names[i] for i in done]
    with pytest.raises(ds.ErrorThresholdExceeded):
        result.raise_for_status()
    # no run() call went unrecorded: nothing kept scoring behind the job's back
    assert len(gate.scored()) + 1 == sum(len(r) for r in tries.values())


@pytest.mark.slow
def test_early_failure_stops_a_job_that_shares_the_cluster_with_another(
        tmp_path, shared_client):
    """Each job has its own plugin: a job busy on the same cluster must neither
    delay nor hide the other's early failure, nor be stopped by it.

    The failing job's other mini-batches wait at a gate until it has stopped
    starting work (helpers.StopGate): only what was then in flight is scored."""
    script = write_script(tmp_path / "src", BAD_CONTENT_SCRIPT)
    gated = write_script(tmp_path / "src-a", GATED_BAD_CONTENT_SCRIPT)
    bad_files(tmp_path / "in-a", 120, bad={0})
    make_files(tmp_path / "in-b", 120)
    runs_b = tmp_path / "runs-b"
    runs_b.mkdir()
    results = {}

    def run_b():
        results["b"] = make_step(
            script, ds.Dataset.File.from_files(str(tmp_path / "in-b")),
            tmp_path / "out-b", mini_batch_size="1", error_threshold=0,
            environment_variables={"SLEEP_S": "0.05", "RUN_DIR": str(runs_b)},
        ).run(client=shared_client)

    other = threading.Thread(target=run_b)
    other.start()
    try:
        while not any(runs_b.iterdir()) and other.is_alive():
            time.sleep(0.05)  # job b is scoring
        with StopGate(shared_client, tmp_path / "out-a", tmp_path / "a") as gate:
            failing = make_step(
                gated, ds.Dataset.File.from_files(str(tmp_path / "in-a")),
                tmp_path / "out-a", mini_batch_size="1", error_threshold=0,
                run_max_try=1, environment_variables=gate.env,
            ).run(client=shared_client)
    finally:
        other.join()

    assert failing.status == "Failed"
    processed = read_report(tmp_path / "out-a")["processed_mini_batches"]
    assert gate.in_flight is not None and len(gate.in_flight) <= N_WORKERS
    assert gate.scored() == gate.in_flight
    assert processed == 1 + len(gate.in_flight), (
        f"mini-batch 0 failed, {len(gate.in_flight)} others were in flight, yet "
        f"{processed} of 120 mini-batches were scored before the job stopped")
    assert results["b"].status == "Completed", results["b"].reason
    assert counts(results["b"]) == (120, 120, 0)


def test_error_threshold_counts_items_and_fails_only_above_it(tmp_path,
                                                              shared_client):
    script = write_script(tmp_path / "src", BAD_CONTENT_SCRIPT)
    bad_files(tmp_path / "in", 8, bad={0, 5})
    dataset = ds.Dataset.File.from_files(str(tmp_path / "in"))

    # mini-batches of 2 files: 2 failed mini-batches = 4 failed items
    at = make_step(script, dataset, tmp_path / "at", mini_batch_size="2",
                   error_threshold=4, run_max_try=1).run(client=shared_client)
    assert at.status == "Completed", at.reason
    assert counts(at) == (8, 4, 4)
    assert at.raise_for_status() is at

    above = make_step(script, dataset, tmp_path / "above", mini_batch_size="2",
                      error_threshold=3, run_max_try=1).run(client=shared_client)
    assert above.status == "Failed"
    assert "error_threshold=3" in above.reason
    with pytest.raises(ds.ErrorThresholdExceeded):
        above.raise_for_status()


def test_error_threshold_minus_one_ignores_even_all_items_failing(tmp_path,
                                                                  shared_client):
    script = write_script(tmp_path / "src", BAD_CONTENT_SCRIPT)
    bad_files(tmp_path / "in", 6, bad=set(range(6)))
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="2", error_threshold=-1, run_max_try=2,
                       ).run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert counts(result) == (6, 0, 6)
    assert result.failed_mini_batches == result.mini_batches == 3
    result.raise_for_status()
    # zero successful items is not a failure of append_row either
    assert read_lines(out / "parallel_run_step.txt") == []


@pytest.mark.parametrize("allowed, status", [(2, "Completed"), (1, "Failed"),
                                             (-1, "Completed")])
def test_allowed_failed_count_limits_failed_mini_batches(tmp_path, shared_client,
                                                         allowed, status):
    script = write_script(tmp_path / "src", BAD_CONTENT_SCRIPT)
    # 10 mini-batches of 2 files; the 2nd and the 7th fail (1 bad file each)
    bad_files(tmp_path / "in", 20, bad={2, 13})
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                       tmp_path / "out", mini_batch_size="2", error_threshold=-1,
                       allowed_failed_count=allowed, run_max_try=1,
                       ).run(client=shared_client)

    assert result.status == status, result.reason
    if status == "Completed":
        assert result.failed_mini_batches == 2
        assert counts(result) == (20, 16, 4)
    else:
        assert f"allowed_failed_count={allowed}" in result.reason


@pytest.mark.parametrize("percent, status", [(30, "Completed"), (25, "Failed")])
def test_allowed_failed_percent_limits_the_share_of_failed_mini_batches(
        tmp_path, shared_client, percent, status):
    script = write_script(tmp_path / "src", BAD_CONTENT_SCRIPT)
    # 10 mini-batches of 1 file, 3 failed = 30 %
    bad_files(tmp_path / "in", 10, bad={1, 4, 8})
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                       tmp_path / "out", mini_batch_size="1", error_threshold=-1,
                       allowed_failed_percent=percent, run_max_try=1,
                       ).run(client=shared_client)

    assert result.status == status, result.reason
    if status == "Completed":
        assert result.failed_mini_batches == 3
        assert counts(result) == (10, 7, 3)
    else:
        assert "allowed_failed_percent=25" in result.reason


# -- hung and crashing run() -----------------------------------------------------------
@pytest.mark.slow
def test_hung_run_is_stopped_retried_and_the_job_goes_on(tmp_path, shared_client):
    script = write_script(tmp_path / "src", """
        import time

        def init():
            mark("init")

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            if names == ["item-0001.txt"]:
                mark("hung")
                time.sleep(1000)
            return names
    """, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 6)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1", run_invocation_timeout=2, run_max_try=2,
                       error_threshold=-1,
                       environment_variables={"MARKER_DIR": str(marker_dir)},
                       ).run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert counts(result) == (6, 5, 1)
    assert result.failed_mini_batches == 1
    tries = tries_by_mini_batch(out)
    assert [(r["try"], r["status"]) for r in tries[1]] == [
        ("1", "RUN_TIMEOUT"), ("2", "RUN_TIMEOUT")]
    assert all(rows[-1]["status"] == "RUN_DONE" for i, rows in tries.items() if i != 1)
    names = file_names(6)
    assert read_lines(result.output_file) == names[:1] + names[2:]
    # both hung processes were really stopped, and init() ran in the restarted one
    hung = [int(s) for s in markers(marker_dir, "hung")]
    assert len(hung) == 2
    assert alive(hung) == []
    inits = [int(s) for s in markers(marker_dir, "init")]
    assert set(hung) <= set(inits)
    assert len(inits) >= len(shared_client.scheduler_info()["workers"]) + 1


def test_os_exit_in_run_kills_only_its_runner_and_the_job_goes_on(tmp_path,
                                                                  shared_client):
    script = write_script(tmp_path / "src", """
        def init():
            mark("init")

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            crashed = os.path.join(MARKER_DIR, "crashed")
            if names == ["item-0002.txt"] and not os.path.exists(crashed):
                open(crashed, "w").close()
                os._exit(7)
            return names
    """, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 6)
    out = tmp_path / "out"
    workers_before = shared_client.run(os.getpid)
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1", run_max_try=2,
                       environment_variables={"MARKER_DIR": str(marker_dir)},
                       ).run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert counts(result) == (6, 6, 0)
    tries = tries_by_mini_batch(out)
    assert [r["status"] for r in tries[2]] == ["RUN_EXCEPTION", "RUN_DONE"]
    assert "7" in tries[2][0]["error"]
    assert read_lines(result.output_file) == file_names(6)
    # the Dask workers survived; only the runner died (and was replaced: init again)
    assert shared_client.run(os.getpid) == workers_before
    assert len(markers(marker_dir, "init")) == len(workers_before) + 1


# -- unreadable input ------------------------------------------------------------------
SCORE_ROWS_SCRIPT = """
def init():
    pass

def run(mini_batch):
    return mini_batch
"""


def test_corrupt_parquet_file_fails_its_mini_batch_only(tmp_path, shared_client):
    script = write_script(tmp_path / "src", SCORE_ROWS_SCRIPT)
    data = tmp_path / "in"
    data.mkdir()
    frames = []
    for i in (0, 2):
        frame = pd.DataFrame({"id": range(i * 100, i * 100 + 50)})
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                       data / f"part-{i}.parquet")
        frames.append(frame)
    (data / "part-1.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_parquet_files(str(data)), out,
                       append_row_file_name="rows.csv").run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert counts(result) == (101, 100, 1)
    assert result.failed_mini_batches == 1
    tries = tries_by_mini_batch(out)
    assert [r["status"] for r in tries[1]] == ["READ_ERROR"]
    assert "part-1.parquet" in tries[1][0]["input"]
    assert tries[1][0]["error"]
    got = pd.read_csv(result.output_file)
    assert got["id"].tolist() == pd.concat(frames)["id"].tolist()


def test_parquet_with_corrupt_pages_fails_its_rows_known_from_the_footer(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", SCORE_ROWS_SCRIPT)
    data = tmp_path / "in"
    data.mkdir()
    pq.write_table(pa.table({"id": range(100, 150)}), data / "a.parquet")
    pq.write_table(pa.table({"x": [i * 0.5 for i in range(4000)]}),
                   data / "b.parquet", row_group_size=1000)
    raw = bytearray((data / "b.parquet").read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little") + 8
    raw[4:-footer] = b"\xab" * (len(raw) - 4 - footer)  # pages gone, footer intact
    (data / "b.parquet").write_bytes(bytes(raw))
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_parquet_files(str(data)), out,
                       append_row_file_name="rows.csv").run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert counts(result) == (4050, 50, 4000)
    tries = tries_by_mini_batch(out)
    assert {r["status"] for rows in tries.values() for r in rows if "b.parquet"
            in r["input"]} == {"READ_ERROR"}
    assert pd.read_csv(result.output_file)["id"].tolist() == list(range(100, 150))


def test_missing_file_in_a_file_list_is_a_read_error_and_the_rest_is_scored(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            return [os.path.basename(p) for p in mini_batch]
    """)
    paths = [str(p) for p in make_files(tmp_path / "in", 6)]
    missing = str(tmp_path / "in" / "item-0004-missing.txt")
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(paths + [missing]), out,
                       mini_batch_size="3").run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert counts(result) == (7, 6, 1)
    assert result.failed_mini_batches == 1
    tries = tries_by_mini_batch(out)
    # sorted order: item-0003, item-0004, item-0004-missing | item-0005
    assert [r["status"] for r in tries[1]] == ["READ_ERROR"]
    assert "item-0004-missing.txt" in tries[1][0]["error"]
    assert [r["status"] for r in tries[0]] == [r["status"] for r in tries[2]] == [
        "RUN_DONE"]
    assert read_lines(result.output_file) == file_names(6)


def test_unparseable_csv_is_a_read_error_and_other_files_are_scored(tmp_path,
                                                                    shared_client):
    script = write_script(tmp_path / "src", SCORE_ROWS_SCRIPT)
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.csv").write_text("id,x\n1,10\n2,20\n")
    (data / "b.csv").write_text("id,x\n3,30\n4,40,400,4000\n5,50\n")
    (data / "c.csv").write_text("id,x\n6,60\n")
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_delimited_files(
        str(data / "*.csv")), out, append_row_file_name="rows.csv",
    ).run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert result.mini_batches == 3
    assert counts(result) == (6, 3, 3)  # b.csv's three rows fail, not "1 item"
    tries = tries_by_mini_batch(out)
    assert [r["status"] for r in tries[1]] == ["READ_ERROR"]
    assert "b.csv" in tries[1][0]["input"]
    got = pd.read_csv(result.output_file)
    assert got.to_dict("list") == {"id": [1, 2, 6], "x": [10, 20, 60]}


# -- broken entry scripts ------------------------------------------------------------
BROKEN_SCRIPTS = {
    "missing-run": ("def init():\n    pass\n", "run()"),
    "missing-init": ("def run(mini_batch):\n    return mini_batch\n", "init()"),
    "syntax-error": ("def init():\n    pass\n\ndef run(mini_batch)\n    return []\n",
                     "syntax error"),
    "import-error": ("import no_such_module_xyz\n\ndef init():\n    pass\n\n"
                     "def run(mini_batch):\n    return mini_batch\n",
                     "no_such_module_xyz"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SCRIPTS))
def test_broken_entry_script_raises_before_any_data_is_processed(tmp_path,
                                                                 shared_client, case):
    source, problem = BROKEN_SCRIPTS[case]
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    # any run() or init() that did run would leave a marker
    source = source.replace(
        "    pass\n", "    open(__import__('os').environ['MARKER_DIR'] + '/i', 'w')\n"
    ).replace(
        "    return mini_batch\n",
        "    open(__import__('os').environ['MARKER_DIR'] + '/r', 'w')\n"
        "    return mini_batch\n",
    )
    script = write_script(tmp_path / "src", source, name="broken_score.py")
    make_files(tmp_path / "in", 4)
    out = tmp_path / "out"
    step = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                     mini_batch_size="2",
                     environment_variables={"MARKER_DIR": str(marker_dir)})

    with pytest.raises(ds.EntryScriptError) as info:
        step.run(client=shared_client)

    message = str(info.value)
    assert "broken_score.py" in message
    assert problem in message
    assert "broken_score.py" in str(info.value.script)
    assert list(marker_dir.iterdir()) == []
    assert records_committed(out) == {}
    assert not (out / "parallel_run_step.txt").exists()


@pytest.mark.parametrize("case", sorted(BROKEN_SCRIPTS))
def test_broken_entry_script_is_reported_in_job_result(tmp_path, shared_client, case):
    """docs/engine-contract.md: a broken script -> "logs/job_result.txt says so"."""
    source, problem = BROKEN_SCRIPTS[case]
    script = write_script(tmp_path / "src", source, name="broken_score.py")
    make_files(tmp_path / "in", 2)
    out = tmp_path / "out"
    step = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out)
    with pytest.raises(ds.EntryScriptError):
        step.run(client=shared_client)

    job_result = out / "logs" / "job_result.txt"
    assert job_result.is_file(), f"{case}: no logs/job_result.txt"
    text = job_result.read_text()
    assert "Failed" in text
    assert "broken_score.py" in text and problem in text


@pytest.mark.parametrize("files", [3, 20])
def test_init_failing_in_every_process_fails_the_job_with_its_error(tmp_path,
                                                                   shared_client,
                                                                   files):
    """Reference semantics: repeated init() failures on all processes fail the job
    (its status), whatever error_threshold says; the root cause names init().
    With 3 mini-batches x 3 tries, init() fails 9 times on 2 processes."""
    script = write_script(tmp_path / "src", """
        def init():
            raise RuntimeError("model file missing")

        def run(mini_batch):
            return mini_batch
    """)
    make_files(tmp_path / "in", files)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1", error_threshold=-1, run_max_try=3,
                       ).run(client=shared_client)

    assert result.succeeded_items == 0
    tries = tries_by_mini_batch(out)
    assert {r["status"] for rows in tries.values() for r in rows} == {"INIT_ERROR"}
    assert result.status == "Failed", (
        f"init() failed in all {sum(map(len, tries.values()))} tries of "
        f"{len(tries)} mini-batches, yet the job Completed")
    assert "model file missing" in result.reason
