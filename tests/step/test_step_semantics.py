"""Entry-script semantics end to end: counting, retries, arguments, order, resume.

Real worker processes, real files in ``tmp_path``, real entry scripts.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import textwrap

import pytest
from helpers import (
    N_WORKERS,
    STOP_GATE_PRELUDE,
    StopGate,
    counts,
    file_names,
    make_files,
    make_step,
    markers,
    read_lines,
    read_report,
    tries_by_mini_batch,
    write_script,
)

import daskscore as ds
from daskscore.output.commitlog import PackLog
from daskscore.output.store import StateStore

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(180)


# -- success counting ---------------------------------------------------------------
def test_short_return_counts_the_rest_as_failed_and_is_not_retried(tmp_path,
                                                                    shared_client):
    script = write_script(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            # only the first half of every mini-batch "succeeds"
            return [os.path.basename(p) for p in mini_batch[: len(mini_batch) // 2]]
    """)
    make_files(tmp_path / "in", 12)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="4", run_max_try=3).run(client=shared_client)

    assert result.status == "Completed"
    assert counts(result) == (12, 6, 6)
    tries = tries_by_mini_batch(out)
    assert sorted(tries) == [0, 1, 2]
    for rows in tries.values():
        assert len(rows) == 1, "a short return must not be retried"
        assert rows[0]["status"] == "RUN_DONE"
        assert (rows[0]["succeeded"], rows[0]["failed"]) == ("2", "2")
    names = file_names(12)
    # the partial output of each mini-batch is kept, in input order
    assert read_lines(result.output_file) == names[0:2] + names[4:6] + names[8:10]


def test_more_results_than_inputs_are_capped_warned_and_all_written(tmp_path,
                                                                    shared_client):
    script = write_script(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            out = []
            for p in mini_batch:
                name = os.path.basename(p)
                out += [name + ":a", name + ":b"]
            return out
    """)
    make_files(tmp_path / "in", 6)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="3").run(client=shared_client)

    assert result.status == "Completed"
    assert counts(result) == (6, 6, 0)
    assert result.failed_mini_batches == 0
    report = read_report(out)
    assert report["succeeded_items"] == 6
    assert report["warnings"], "capping the count must leave a warning in job_report"
    assert any("6" in w and "3" in w for w in report["warnings"]), report["warnings"]
    expected = [f"{n}:{s}" for n in file_names(6) for s in ("a", "b")]
    assert read_lines(result.output_file) == expected


@pytest.mark.parametrize("returned", ["None", "{'a': 1, 'b': 2}", "'ab'"],
                         ids=["none", "dict", "str"])
def test_returning_a_non_sequence_fails_every_try(tmp_path, shared_client, returned):
    script = write_script(tmp_path / "src", f"""
        def init():
            pass

        def run(mini_batch):
            return {returned}
    """)
    make_files(tmp_path / "in", 4)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="2", run_max_try=2).run(client=shared_client)

    assert result.status == "Completed"  # error_threshold defaults to -1
    assert (result.succeeded_items, result.failed_items) == (0, 4)
    assert result.failed_mini_batches == 2
    tries = tries_by_mini_batch(out)
    for rows in tries.values():
        assert [r["try"] for r in rows] == ["1", "2"]
        assert all(r["status"] == "RUN_EXCEPTION" for r in rows)
        assert all(r["error"] for r in rows)
    assert read_lines(result.output_file) == []


# -- retries --------------------------------------------------------------------------
@pytest.mark.parametrize("failure, shown", [
    ('raise RuntimeError(f"first try of {first} fails on purpose")',
     "RuntimeError: first try of item-"),
    ("sys.exit(42)", "SystemExit: 42"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
], ids=["exception", "sys-exit", "keyboard-interrupt"])
def test_failed_first_try_is_retried_and_written_once(tmp_path, shared_client,
                                                      failure, shown):
    script = write_script(tmp_path / "src", f"""
        import os
        import sys

        TRIED = os.environ["TRIED_DIR"]

        def init():
            pass

        def run(mini_batch):
            first = os.path.basename(mini_batch[0])
            marker = os.path.join(TRIED, first)
            if not os.path.exists(marker):
                open(marker, "w").close()
                {failure}
            return [os.path.basename(p) for p in mini_batch]
    """)
    (tmp_path / "tried").mkdir()
    make_files(tmp_path / "in", 9)
    out = tmp_path / "out"
    result = make_step(
        script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
        mini_batch_size="3", run_max_try=3,
        environment_variables={"TRIED_DIR": str(tmp_path / "tried")},
    ).run(client=shared_client)

    assert result.status == "Completed"
    assert (result.succeeded_items, result.failed_items) == (9, 0)
    assert result.failed_mini_batches == 0
    assert result.tries == 6
    tries = tries_by_mini_batch(out)
    assert sorted(tries) == [0, 1, 2]
    line = script.read_text().splitlines().index(f"        {failure}") + 1
    for rows in tries.values():
        assert [(r["try"], r["status"]) for r in rows] == [
            ("1", "RUN_EXCEPTION"), ("2", "RUN_DONE")]
        # the user's error and where it was raised, in one line
        assert shown in rows[0]["error"]
        assert f"score.py:{line}" in rows[0]["error"]
    # exactly once: no item of a retried mini-batch appears twice
    assert read_lines(result.output_file) == file_names(9)


def test_run_max_try_exhausted_fails_all_items_of_the_mini_batch(tmp_path,
                                                                 shared_client):
    script = write_script(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            if "item-0003.txt" in names:
                raise ValueError("poisoned mini-batch")
            return names
    """)
    make_files(tmp_path / "in", 9)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="3", run_max_try=2).run(client=shared_client)

    assert result.status == "Completed"
    assert (result.succeeded_items, result.failed_items) == (6, 3)
    assert result.failed_mini_batches == 1
    tries = tries_by_mini_batch(out)
    assert [(r["try"], r["status"]) for r in tries[1]] == [
        ("1", "RUN_EXCEPTION"), ("2", "RUN_EXCEPTION")]
    assert all("poisoned mini-batch" in r["error"] for r in tries[1])
    assert [len(tries[0]), len(tries[2])] == [1, 1]
    names = file_names(9)
    assert read_lines(result.output_file) == names[:3] + names[6:]


# -- what run() receives --------------------------------------------------------------
BATCH_SCRIPT = """
import json

def init():
    pass

def run(mini_batch):
    return [json.dumps(list(mini_batch))]
"""


def test_file_mini_batches_are_mini_batch_size_files_in_sorted_path_order(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", BATCH_SCRIPT)
    data = tmp_path / "in"
    # created out of order, in nested folders
    paths = []
    for i in reversed(range(25)):
        path = data / f"d{i % 3}" / f"f{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i]))
        paths.append(str(path))
    paths.sort()
    out = tmp_path / "out"
    default = make_step(script, ds.Dataset.File.from_files(str(data)), out,
                        ).run(client=shared_client)
    assert default.status == "Completed"
    assert [json.loads(x) for x in read_lines(default.output_file)] == [
        paths[0:10], paths[10:20], paths[20:25]]

    small = make_step(script, ds.Dataset.File.from_files(str(data / "*" / "*.bin")),
                      tmp_path / "out4", mini_batch_size=4).run(client=shared_client)
    batches = [json.loads(x) for x in read_lines(small.output_file)]
    assert small.mini_batches == 7
    assert batches == [paths[i:i + 4] for i in range(0, 25, 4)]
    assert all(os.path.isfile(p) for p in batches[0])


def test_several_inputs_are_scored_in_the_order_given(tmp_path, shared_client):
    script = write_script(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            return [os.path.basename(p) for p in mini_batch]
    """)
    make_files(tmp_path / "z", 3, prefix="z")
    make_files(tmp_path / "a", 3, prefix="a")
    result = make_step(script, [ds.Dataset.File.from_files(str(tmp_path / "z")),
                                ds.Dataset.File.from_files(str(tmp_path / "a"))],
                       tmp_path / "out", mini_batch_size="2").run(client=shared_client)
    assert result.status == "Completed"
    assert result.mini_batches == 4  # a mini-batch never spans two inputs
    assert read_lines(result.output_file) == file_names(3, "z") + file_names(3, "a")


def test_source_directory_is_shipped_and_importable(tmp_path, shared_client):
    src = tmp_path / "scripts"
    write_script(src / "lib", """
        SCALE = 7
    """, name="helper_mod.py")
    (src / "lib" / "__init__.py").write_text("")
    (src / "model.txt").write_text("weights-v1\n")
    write_script(src, """
        import os

        from lib.helper_mod import SCALE

        def init():
            global MODEL
            here = os.path.dirname(os.path.abspath(__file__))
            with open(os.path.join(here, "model.txt")) as f:
                MODEL = f.read().strip()

        def run(mini_batch):
            return [f"{MODEL}:{SCALE * int(open(p).read())}" for p in mini_batch]
    """, name="score.py")
    make_files(tmp_path / "in", 3)
    cfg = ds.ParallelRunConfig(entry_script="score.py", source_directory=str(src),
                               mini_batch_size="2")
    step = ds.ParallelRunStep(name="test-step", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(tmp_path / "in"))],
                              output=str(tmp_path / "out"))
    result = step.run(client=shared_client)
    assert result.status == "Completed", result.reason
    assert read_lines(result.output_file) == ["weights-v1:0", "weights-v1:7",
                                              "weights-v1:14"]


# -- what the script sees ------------------------------------------------------------
def test_environment_variables_are_set_at_import_and_in_init_and_run(tmp_path,
                                                                     shared_client):
    script = write_script(tmp_path / "src", """
        import os

        AT_IMPORT = os.environ.get("DS_TEST_VALUE")
        AT_INIT = None

        def init():
            global AT_INIT
            AT_INIT = os.environ.get("DS_TEST_VALUE")

        def run(mini_batch):
            now = os.environ.get("DS_TEST_VALUE")
            return [f"{AT_IMPORT}|{AT_INIT}|{now}" for _ in mini_batch]
    """)
    make_files(tmp_path / "in", 4)
    out = tmp_path / "out"
    value = "a value with spaces=and equals"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1",
                       environment_variables={"DS_TEST_VALUE": value},
                       ).run(client=shared_client)

    assert result.status == "Completed"
    assert read_lines(result.output_file) == [f"{value}|{value}|{value}"] * 4
    assert "DS_TEST_VALUE" not in os.environ


def test_arguments_are_sys_argv_in_init_and_run_and_entry_script_arguments(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", """
        import argparse
        import json
        import sys

        import daskscore as ds

        SEEN = {}

        def _seen():
            parser = argparse.ArgumentParser()
            parser.add_argument("--scale", type=int, required=True)
            args, unknown = parser.parse_known_args()
            return {"argv": sys.argv[1:], "scale": args.scale, "unknown": unknown,
                    "entry_script": ds.EntryScript().arguments}

        def init():
            SEEN["init"] = _seen()

        def run(mini_batch):
            line = json.dumps({"init": SEEN["init"], "run": _seen()}, sort_keys=True)
            return [line for _ in mini_batch]
    """)
    make_files(tmp_path / "in", 3)
    out = tmp_path / "out"
    arguments = ["--scale", "3", "--extra", "x y"]
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1", arguments=["--scale", 3, "--extra", "x y"],
                       ).run(client=shared_client)

    assert result.status == "Completed", result.reason
    lines = read_lines(result.output_file)
    assert len(lines) == 3
    expected = {"argv": arguments, "scale": 3, "unknown": ["--extra", "x y"],
                "entry_script": arguments}
    for line in lines:
        assert json.loads(line) == {"init": expected, "run": expected}


# -- order and exactly once -----------------------------------------------------------
def test_collected_output_is_in_input_order_when_mini_batches_finish_out_of_order(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", """
        import os
        import time

        DONE = os.environ["DONE_LOG"]

        def init():
            pass

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            index = int(names[0].split("-")[1].split(".")[0]) // 2
            if index == 0:
                time.sleep(2)  # the first mini-batch finishes last
            with open(DONE, "a") as f:
                f.write(f"{index}\\n")
            return names
    """)
    make_files(tmp_path / "in", 16)
    out = tmp_path / "out"
    done_log = tmp_path / "done.log"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="2",
                       environment_variables={"DONE_LOG": str(done_log)},
                       ).run(client=shared_client)

    assert result.status == "Completed"
    finished = [int(x) for x in read_lines(done_log)]
    assert sorted(finished) == list(range(8))
    assert finished != sorted(finished), "the test needs out-of-order completion"
    assert read_lines(result.output_file) == file_names(16)


RESUME_SCRIPT = """
import os

RUNS = os.environ["RUN_DIR"]

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    open(os.path.join(RUNS, f"run-{names[0]}-{os.urandom(4).hex()}"), "w").close()
    return [f"{n}:{open(p).read().strip()}" for n, p in zip(names, mini_batch)]
"""


@pytest.mark.slow
def test_rerun_into_the_same_output_resumes_and_any_change_recomputes(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", RESUME_SCRIPT)
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    make_files(tmp_path / "in", 10)
    out = tmp_path / "out"

    def run_step(arguments=None):
        return make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                         out, mini_batch_size="2", arguments=arguments,
                         environment_variables={"RUN_DIR": str(run_dir)},
                         ).run(client=shared_client)

    first = run_step()
    assert first.status == "Completed"
    assert first.resumed_mini_batches == 0
    expected = [f"{n}:{i}" for i, n in enumerate(file_names(10))]
    assert read_lines(first.output_file) == expected
    collected = (out / "parallel_run_step.txt").read_bytes()
    assert len(markers(run_dir, "run")) == 5

    second = run_step()
    assert second.status == "Completed"
    assert second.resumed_mini_batches == second.mini_batches == 5
    assert (second.succeeded_items, second.failed_items) == (10, 0)
    assert len(markers(run_dir, "run")) == 5, "a resumed job must not call run() again"
    assert (out / "parallel_run_step.txt").read_bytes() == collected
    assert read_report(out)["resumed_mini_batches"] == 5

    script.write_text(RESUME_SCRIPT + "\n# changed\n")
    third = run_step()
    assert third.status == "Completed"
    assert third.resumed_mini_batches == 0
    assert len(markers(run_dir, "run")) == 10, "a changed script must be run again"
    assert read_lines(third.output_file) == expected

    fourth = run_step(arguments=["--new"])
    assert fourth.resumed_mini_batches == 0, "changed arguments must recompute"
    assert len(markers(run_dir, "run")) == 15

    (tmp_path / "in" / "item-0003.txt").write_text("33\n")
    fifth = run_step(arguments=["--new"])
    assert fifth.resumed_mini_batches == 0, "a changed input must recompute"
    assert len(markers(run_dir, "run")) == 20
    assert read_lines(fifth.output_file)[3] == "item-0003.txt:33"


def _resume_job(tmp_path, client):
    """A step over 10 files in mini-batches of 2 whose run() leaves a mark per
    call in RUN_DIR: ``(run_step, run_dir, out)``."""
    script = write_script(tmp_path / "src", RESUME_SCRIPT)
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    make_files(tmp_path / "in", 10)
    out = tmp_path / "out"

    def run_step():
        return make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                         out, mini_batch_size="2",
                         environment_variables={"RUN_DIR": str(run_dir)},
                         ).run(client=client)

    return run_step, run_dir, out


def test_a_mini_batch_an_earlier_run_left_unfinished_shows_its_interrupted_try(
        tmp_path, shared_client):
    """What a client killed mid-job leaves: mini-batch 2 started (its start mark
    in the log of a pack 2-3), never recorded. The rerun packs it differently
    (on its own) and still records the interrupted try before its own."""
    run_step, run_dir, out = _resume_job(tmp_path, shared_client)

    assert run_step().status == "Completed"
    store = StateStore(str(out))
    store.drop_records({2})
    log = PackLog(store.records, 2, 3)
    log.start(2, {"worker": "w-gone", "run": "an-earlier-run", "started_at": 1.0,
                  "lost": []})
    log.close()

    second = run_step()

    assert second.status == "Completed"
    assert second.resumed_mini_batches == 4
    assert len(markers(run_dir, "run")) == 6, "only mini-batch 2 is scored again"
    tries = tries_by_mini_batch(out)[2]
    assert [t["status"] for t in tries] == ["INTERRUPTED", "RUN_DONE"]
    assert tries[0]["worker"] == "w-gone"
    assert read_lines(second.output_file) == [
        f"{n}:{i}" for i, n in enumerate(file_names(10))]


def test_a_committed_part_that_is_gone_fails_the_job_and_the_rerun_scores_it(
        tmp_path, shared_client):
    """Output cut behind the job's back (the segment file holding mini-batch 3's
    part is truncated there): no collected file silently short of its rows; the
    records of the parts that are gone are dropped, so the next run scores those
    mini-batches again and the output is whole."""
    run_step, run_dir, out = _resume_job(tmp_path, shared_client)

    expected = [f"{n}:{i}" for i, n in enumerate(file_names(10))]
    assert read_lines(run_step().output_file) == expected
    records = StateStore(str(out)).load_records()
    name, offset, _ = records[3]["part"]
    cut = [i for i, r in records.items()
           if r["part"][0] == name and r["part"][1] >= offset]
    os.truncate(out / ".daskscore" / "parts" / name, offset)

    with pytest.raises(ds.JobError) as excinfo:
        run_step()
    message = str(excinfo.value)
    assert (f"{len(cut)} mini-batch(es) recorded as scored have no committed part"
            in message)
    assert name in message and "run the same step again" in message
    assert read_lines(out / "parallel_run_step.txt") == expected  # left as it was

    third = run_step()
    assert third.status == "Completed"
    assert third.resumed_mini_batches == 5 - len(cut)
    assert len(markers(run_dir, "run")) == 5 + len(cut), "only the cut ones again"
    assert read_lines(third.output_file) == expected


@pytest.mark.slow
def test_rerun_after_a_cancelled_job_scores_the_rest_exactly_once(tmp_path,
                                                                  shared_client):
    """The first job stops at mini-batch 0's failure (its other mini-batches wait
    at a gate until it has stopped: helpers.StopGate); the second, without a
    threshold, scores the rest, each mini-batch once."""
    script = write_script(tmp_path / "src", STOP_GATE_PRELUDE + textwrap.dedent("""

        def init():
            pass

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            if names == ["item-0000.txt"]:
                raise ValueError("the first mini-batch always fails")
            hold(names)
            return names
    """))
    make_files(tmp_path / "in", 200)
    out = tmp_path / "out"
    gate = StopGate(shared_client, out, tmp_path / "gate")

    def run_step(error_threshold):
        return make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                         out, mini_batch_size="1", run_max_try=1,
                         error_threshold=error_threshold,
                         environment_variables=gate.env,
                         ).run(client=shared_client)

    with gate:
        first = run_step(0)
    assert first.status == "Failed"
    scored_first = gate.scored()
    assert gate.in_flight is not None and len(gate.in_flight) <= N_WORKERS
    assert scored_first == gate.in_flight, "the first job must stop at once"

    # thresholds do not change what is computed: the second job resumes
    second = run_step(-1)
    assert second.status == "Completed", second.reason
    # kept: what the first job scored, and mini-batch 0's failure (a plain rerun
    # keeps failures; --rerun-failed would drop them)
    assert second.resumed_mini_batches == len(scored_first) + 1
    names = sorted(m.rsplit("-", 1)[0] for m in markers(gate.runs, "run"))
    assert names == file_names(200)[1:], "every mini-batch scored exactly once"
    assert read_lines(second.output_file) == file_names(200)[1:]


# -- local debugging -----------------------------------------------------------------
def test_entry_script_helper_works_outside_a_cluster(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path / "src", """
        import os

        import daskscore as ds

        def init():
            global OUT
            helper = ds.EntryScript()
            helper.logger.info("init outside a cluster")
            OUT = helper.output_dir

        def run(mini_batch):
            with open(os.path.join(OUT, "seen.txt"), "w") as f:
                f.write("\\n".join(mini_batch))
            return list(mini_batch)
    """)
    helper = ds.EntryScript()
    assert isinstance(helper.logger, logging.Logger)
    assert isinstance(helper.agent_name, str) and helper.agent_name
    assert helper.arguments == sys.argv[1:]
    for folder in (helper.output_dir, helper.log_dir, helper.working_dir):
        assert isinstance(folder, str) and folder
    assert os.path.isdir(helper.output_dir)
    assert helper.output_dir.startswith(str(tmp_path))

    # a user's script can be imported and called locally, as on a cluster
    spec = importlib.util.spec_from_file_location("local_score", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    assert module.run(["a", "b"]) == ["a", "b"]
    seen = os.path.join(helper.output_dir, "seen.txt")
    assert read_lines(seen) == ["a", "b"]
