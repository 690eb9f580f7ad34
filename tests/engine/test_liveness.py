"""The no-progress watchdog (``engine.liveness.Liveness``), without a cluster.

Events are fed as the scheduler sends them on its ``"all"`` topic; the worker
table is what ``client.scheduler_info()["workers"]`` gives.
"""

from __future__ import annotations

from daskscore._protocol import TryStatus
from daskscore.engine.liveness import Liveness


def table(*names, resource=None):
    return {f"tcp://127.0.0.1:{4000 + i}": {
        "name": name, "resources": {resource: 1} if resource else {}}
        for i, name in enumerate(names)}


def removed(address, *keys, expected=False):
    return (0.0, {"action": "remove-worker", "worker": address,
                  "processing-tasks": set(keys), "expected": expected})


def test_live_workers_without_deaths_are_never_stuck():
    live = Liveness(10, None)
    assert not live.check(table("w-0", "w-1"), now=0)
    assert not live.check(table("w-0", "w-1"), now=1000)


def test_no_worker_for_the_job_is_stuck_after_the_timeout():
    live = Liveness(10, "daskscore-job")
    workers = table("w-0", "w-1")  # none has the job's resource
    assert not live.check(workers, now=100)
    assert not live.check(workers, now=109)
    assert live.check(workers, now=110)
    assert live.reason([], [], "the workers' logs").startswith(
        "no worker with the job's script loaded has been alive for 10 s")
    # once a worker holds the resource again, the clock stops
    assert not live.check(table("w-0", resource="daskscore-job"), now=111)


def test_workers_dying_again_and_again_are_stuck_unless_a_mini_batch_ends():
    live = Liveness(5, None)
    workers = table("worker-0", "worker-1")
    assert not live.check(workers, now=0)
    first, second = list(workers)
    live.on_event(removed(first, "mb-3"))
    assert not live.check(workers, now=1000)  # one death: a worker may be slow
    live.on_event(removed(second, "mb-4"))
    live.progress({"status": TryStatus.WORKER_DIED})  # not progress
    live.deaths = [type(d)(0.0, d.address, d.keys) for d in live.deaths]
    assert live.check(workers, now=5)
    reason = live.reason([3], ["killed by SIGKILL"], "out/logs/sys/")
    assert reason.startswith("all 2 workers died while scoring mini-batch 3 "
                             "(killed by SIGKILL)"), reason
    assert reason.endswith("; see out/logs/sys/")
    # a replacement that died before it was seen is known by its address only
    live.on_event(removed("tcp://127.0.0.1:5000", "mb-3"))
    assert live.reason([3], [], "logs").startswith("all 2 workers died (3 times) ")
    # a mini-batch that ended (other than by dying) is progress
    live.progress({"status": TryStatus.RUN_DONE})
    assert not live.check(workers, now=6)


def test_a_worker_closed_on_purpose_is_not_a_death():
    live = Liveness(1, None)
    live.on_event(removed("tcp://127.0.0.1:4000", expected=True))
    live.on_event((0.0, {"action": "add-worker", "worker": "tcp://x:1"}))
    assert live.deaths == []
