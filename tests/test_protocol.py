"""The typed contracts of ``daskscore._protocol``: records and tries as stored.

A record is written as JSON (``.daskscore/records/<id>.json``) and read back by
later runs (resume), so its dict form is a file format: these tests pin it.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import FrozenInstanceError

import pytest

from daskscore._protocol import (
    JobSpec,
    JobStatus,
    MiniBatchRecord,
    RunnerSetup,
    TryOutcome,
    TryStatus,
)

TRY_KEYS = [
    "items", "succeeded", "failed", "read_seconds", "run_seconds", "status",
    "error", "traceback", "has_output", "warning", "read_failed", "output_rows",
    "try", "worker", "started_at", "elapsed_seconds", "peak_rss_mib",
]
RECORD_KEYS = [
    "index", "input", "items", "succeeded", "failed", "status",
    "failed_mini_batch", "error", "warning", "has_output", "output_rows",
    "worker", "tries", "part",
]


def a_try(**over) -> TryOutcome:
    fields = {"items": 4, "succeeded": 3, "failed": 1, "read_seconds": 0.25,
              "run_seconds": 1.5, "status": TryStatus.RUN_DONE, "has_output": True,
              "warning": "run() returned 3 results", "output_rows": 3, "try_no": 2,
              "worker": "host-worker-1", "started_at": 1700000000.5,
              "elapsed_seconds": 1.75, **over}
    return TryOutcome(**fields)


def a_record(**over) -> MiniBatchRecord:
    lost = TryOutcome(try_no=0, worker="host-worker-0",
                      status=TryStatus.WORKER_DIED, error="the worker died")
    fields = {"index": 42, "input": "/data/a.csv bytes 0-100", "items": 4,
              "succeeded": 3, "failed": 1, "status": TryStatus.RUN_DONE,
              "failed_mini_batch": False, "has_output": True, "output_rows": 3,
              "worker": "host-worker-1", "tries": [lost, a_try()], **over}
    return MiniBatchRecord(**fields)


def test_try_dict_has_todays_keys_and_try_for_try_no():
    d = a_try().to_dict()
    assert list(d) == TRY_KEYS
    assert d["try"] == 2 and "try_no" not in d


def test_try_round_trip():
    t = a_try(status=TryStatus.RUN_EXCEPTION, error="ValueError: x",
              traceback="Traceback ...")
    assert TryOutcome.from_dict(t.to_dict()) == t
    assert TryOutcome.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_record_round_trip_through_json():
    record = a_record()
    d = record.to_dict()
    assert list(d) == RECORD_KEYS
    assert [t["try"] for t in d["tries"]] == [0, 2]
    back = MiniBatchRecord.from_dict(json.loads(json.dumps(d)))
    assert back == record
    assert back.to_dict() == d
    assert isinstance(back.tries[1], TryOutcome)


def test_a_part_is_kept_by_the_record_not_by_its_tries():
    """Where the runner committed the output travels on the try and stays with
    the record (the collected file reads it); a try's stored dict, a row of
    processed_mini-batches.csv, does not repeat it."""
    t = a_try(has_output=True)
    t.part = ["seg-0123.txt", 40, 12]
    assert "part" not in t.to_dict()
    record = a_record(has_output=True, part=list(t.part))
    back = MiniBatchRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert back.part == ["seg-0123.txt", 40, 12]
    assert MiniBatchRecord.from_dict({"index": 1, "status": "RUN_DONE"}).part is None


def test_statuses_serialise_as_their_strings():
    d = a_record(status=TryStatus.READ_ERROR).to_dict()
    assert type(d["status"]) is str and d["status"] == "READ_ERROR"
    assert [type(t["status"]) for t in d["tries"]] == [str, str]
    text = json.dumps(d)
    assert '"status": "READ_ERROR"' in text
    assert '"status": "WORKER_DIED"' in text and '"status": "RUN_DONE"' in text
    assert json.dumps({"status": JobStatus.COMPLETED}) == '{"status": "Completed"}'
    # read back, a status is the enum again (and still equal to its string)
    back = MiniBatchRecord.from_dict(json.loads(text))
    assert back.status is TryStatus.READ_ERROR and back.status == "READ_ERROR"
    assert back.tries[0].status is TryStatus.WORKER_DIED


def test_a_status_given_as_a_string_becomes_the_enum():
    assert TryOutcome(status="RUN_TIMEOUT").status is TryStatus.RUN_TIMEOUT
    assert MiniBatchRecord(index=0, status="INIT_ERROR").status is (
        TryStatus.INIT_ERROR
    )
    with pytest.raises(ValueError):
        TryOutcome(status="NOT_A_STATUS")


def test_an_old_record_loads():
    """A record of an earlier version: tries without some keys, no output_rows."""
    old = {
        "index": 3,
        "input": "/data/f3.png",
        "items": 1,
        "succeeded": 0,
        "failed": 1,
        "status": "WORKER_DIED",
        "failed_mini_batch": True,
        "error": "the worker scoring this mini-batch died repeatedly",
        "warning": "",
        "has_output": False,
        "worker": "",
        "tries": [
            # a lost try (no has_output, warning, read_failed, output_rows)
            {"try": 0, "worker": "w-a", "items": 0, "succeeded": 0, "failed": 0,
             "elapsed_seconds": 0.0, "run_seconds": 0.0, "read_seconds": 0.0,
             "status": "INTERRUPTED", "error": "an earlier run stopped",
             "traceback": "", "started_at": None},
            # a try of a dead worker's pack (no started_at either)
            {"try": 1, "worker": "", "items": 1, "succeeded": 0, "failed": 1,
             "elapsed_seconds": 0.0, "run_seconds": 0.0, "read_seconds": 0.0,
             "status": "WORKER_DIED", "error": "died", "traceback": ""},
        ],
    }
    record = MiniBatchRecord.from_dict(old)
    assert record.index == 3 and record.status is TryStatus.WORKER_DIED
    assert record.failed_mini_batch is True and record.output_rows == 0
    assert [t.try_no for t in record.tries] == [0, 1]
    assert [t.status for t in record.tries] == [TryStatus.INTERRUPTED,
                                                TryStatus.WORKER_DIED]
    assert record.tries[1].started_at is None and record.tries[1].has_output is False
    # what it says is kept: every key of the old record, with its value
    again = record.to_dict()
    for key, value in old.items():
        if key != "tries":
            assert again[key] == value
    for old_try, new_try in zip(old["tries"], again["tries"]):
        assert {k: new_try[k] for k in old_try} == old_try


def test_unknown_keys_of_a_newer_record_are_ignored():
    d = a_record().to_dict()
    d["something_new"] = 1
    d["tries"][0]["also_new"] = 2
    assert MiniBatchRecord.from_dict(d) == a_record()


def test_records_default_to_no_tries_and_no_output():
    d = MiniBatchRecord(index=5, status=TryStatus.RUN_DONE).to_dict()
    assert d["tries"] == [] and d["has_output"] is False and d["output_rows"] == 0


def _job(**over) -> JobSpec:
    fields = {"bundle": b"PK", "script_name": "score.py",
              "run_invocation_timeout": 60.0, "run_max_try": 3,
              "init_timeout": 600.0, "output_action": "append_row",
              "output_format": "txt", "output_url": "/out",
              "parts_url": "/out/.daskscore/parts",
              "records_url": "/out/.daskscore/records", "log_dir": "/out/logs",
              "log_url": "/out/logs", "logs_local": True,
              "script_output_dir": "/out/outputs",
              "script_output_url": "/out/outputs", **over}
    return JobSpec(**fields)


def test_job_spec_is_frozen_and_pickles():
    job = _job(sources=[{"storage_options": {}, "read_options": {"format": "csv"}}])
    with pytest.raises(FrozenInstanceError):
        job.run_max_try = 5
    assert pickle.loads(pickle.dumps(job)) == job
    # what code used to read with .get() has a default
    assert (job.allowed_names, job.resource, job.named_inputs, job.runner_env,
            job.model_options, job.stop_on_failure) == (None, None, {}, {}, {}, False)


def test_runner_setup_pickles():
    setup = RunnerSetup(
        bundle_dir="/w/src", script_name="score.py", arguments=["--x", "1"],
        logging_level="INFO", agent_name="h-worker-0",
        entry_script_log="/w/logs/entry_script.log", working_dir="/w",
        parts_url="/out/.daskscore/parts", output_format="csv",
        output_action="append_row", context={"agent_name": "h-worker-0"},
    )
    back = pickle.loads(pickle.dumps(setup))
    assert back == setup and back.source_display == "" and back.model_options == {}


def test_a_try_outcome_pickles_with_its_status():
    t = a_try(status=TryStatus.RUN_TIMEOUT)
    back = pickle.loads(pickle.dumps(t))
    assert back == t and back.status is TryStatus.RUN_TIMEOUT


def test_peak_rss_is_kept_and_older_tries_without_it_still_load():
    t = a_try()
    t.peak_rss_mib = 123.4
    assert TryOutcome.from_dict(t.to_dict()).peak_rss_mib == 123.4
    old = t.to_dict()
    del old["peak_rss_mib"]  # a record written before the column existed
    assert TryOutcome.from_dict(old).peak_rss_mib is None
