"""How the scoring loop takes a finished task's result, without a cluster.

A task can end just before the scheduler is lost: Dask reports it finished, but
its result lives on the cluster and fetching it fails. The job must then stop
as one whose scheduler was lost (its records are committed and read from the
output folder), not crash, and it must not submit the pack again.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from distributed.client import FutureCancelledError
from distributed.comm.core import CommClosedError

from daskscore._protocol import MiniBatchSpec
from daskscore.engine.scoring import ScoringLoop


class FinishedFuture:
    """A future Dask reports finished, whose result cannot be fetched."""

    def __init__(self, exc: BaseException) -> None:
        self.key, self.status, self.exc = "step-mb-000003", "finished", exc
        self._state = SimpleNamespace(exception=None)

    def result(self):
        raise self.exc


def loop_state():
    return SimpleNamespace(lost_scheduler=False, pending={}, reason="")


@pytest.mark.parametrize("exc", [
    CommClosedError("in <TCP (closed) ConnectionPool.gather>: Stream is closed"),
    ConnectionRefusedError("the scheduler is gone"),
    FutureCancelledError("step-mb-000003", reason="scheduler-connection-lost"),
])
def test_a_result_lost_with_the_scheduler_stops_the_job_as_scheduler_lost(exc):
    loop = loop_state()
    assert ScoringLoop._records_of(loop, FinishedFuture(exc)) == []
    assert loop.lost_scheduler


def test_a_pack_dask_cancelled_on_its_own_is_scored_again_but_its_frames_fail():
    """Its result died with its worker before it was fetched, and Dask cancelled
    it: no records, so the loop submits what it did not commit again; the dask
    DataFrame partitions it carried are gone with it and fail as lost."""
    loop = loop_state()
    exc = FutureCancelledError("step-mb-000003", reason="lost dependencies")
    assert ScoringLoop._records_of(loop, FinishedFuture(exc)) == []
    assert not loop.lost_scheduler
    loop.pending = {"step-mb-000003": [
        MiniBatchSpec(index=3, kind="files", paths=("a",), items=1),
        MiniBatchSpec(index=4, kind="frame", start=4, stop=5, items=2),
    ]}
    records = ScoringLoop._records_of(loop, FinishedFuture(exc))
    assert [(r["index"], r["status"], r["failed"]) for r in records] == [
        (4, "WORKER_DIED", 2)]
    assert "lost with its worker" in records[0]["error"]
    assert not loop.lost_scheduler


def test_a_failure_to_fetch_other_than_a_cancel_or_a_lost_connection_is_raised():
    loop = loop_state()
    with pytest.raises(KeyError):
        ScoringLoop._records_of(loop, FinishedFuture(KeyError("step-mb-000003")))
    assert not loop.lost_scheduler


def test_no_pack_is_submitted_once_the_scheduler_is_lost():
    submitted = []
    loop = SimpleNamespace(
        _lock=threading.RLock(), pending={}, max_in_flight=8,
        reason="", lost_scheduler=True, packs=iter([[1], [2]]), futures=[],
        submit_pack=submitted.append,
        client=SimpleNamespace(status="running"))
    ScoringLoop._submit_more(loop)
    assert submitted == []
    loop.lost_scheduler, loop.client.status = False, "closed"
    ScoringLoop._submit_more(loop)
    assert submitted == []
    loop.client.status = "running"
    ScoringLoop._submit_more(loop)
    assert submitted == [[1], [2]]
