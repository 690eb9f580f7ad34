"""What a new run keeps of an earlier one (a real output folder, no cluster)."""

from __future__ import annotations

import pytest

from daskscore.engine.resume import load_state
from daskscore.errors import JobError
from daskscore.output.store import StateStore, write_record


def commit(store: StateStore, index: int, failed: bool) -> None:
    write_record(store.fs, store.records, index, {
        "index": index, "succeeded": 0 if failed else 1, "failed": int(failed),
        "failed_mini_batch": failed,
    })


@pytest.fixture
def store(tmp_path):
    s = StateStore(str(tmp_path / "out"))
    state = load_state(s, "fp-1", 4, step_name="step")
    assert state.resumed == 0
    commit(s, 0, failed=False)
    commit(s, 1, failed=True)
    return s


def test_same_fingerprint_resumes_every_committed_record(store):
    state = load_state(store, "fp-1", 4)
    assert sorted(state.records) == [0, 1]


def test_another_fingerprint_starts_afresh(store):
    assert load_state(store, "fp-2", 4).resumed == 0
    assert store.load_records() == {}
    assert store.read_manifest()["fingerprint"] == "fp-2"


def test_records_past_the_plan_are_not_resumed(store):
    assert sorted(load_state(store, "fp-1", 1).records) == [0]


def test_rerun_failed_keeps_the_succeeded_and_drops_the_failed(store):
    state = load_state(store, "fp-other", 4, rerun_failed=True)
    assert sorted(state.records) == [0]
    assert sorted(store.load_records()) == [0]


def test_rerun_failed_needs_an_earlier_run_of_the_same_inputs(tmp_path, store):
    with pytest.raises(JobError, match="holds no earlier run"):
        load_state(StateStore(str(tmp_path / "empty")), "fp", 4, rerun_failed=True)
    with pytest.raises(JobError, match=r"changed \(4 mini-batches then, 5 now\)"):
        load_state(store, "fp-1", 5, rerun_failed=True)


def test_an_input_changed_since_the_first_run_began_starts_afresh(tmp_path):
    """A fresh start stats nothing: its manifest holds when it began to list
    its inputs, and only a resume asks whether any input changed since."""
    s = StateStore(str(tmp_path / "out"))
    asked: list[float] = []

    def changed(since: float) -> bool:
        asked.append(since)
        return len(asked) > 1

    load_state(s, "fp", 4, changed_since=changed, seen_at=1234.5)
    assert asked == [] and s.read_manifest()["inputs_seen_at"] == 1234.5
    commit(s, 0, failed=False)
    assert sorted(load_state(s, "fp", 4, changed_since=changed).records) == [0]
    assert asked == [1234.5]  # nothing changed since the first run began
    state = load_state(s, "fp", 4, changed_since=changed, seen_at=99.0)
    assert state.resumed == 0 and s.load_records() == {}
    assert s.read_manifest()["inputs_seen_at"] == 99.0
